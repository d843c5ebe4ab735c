#include "report.h"

#include <cmath>
#include <cstdio>

namespace mesh::bench {

namespace {

std::string fmt(double v, int prec = 1) {
  if (v < 0) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out;
}

std::string jnum(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

void print_table(const std::vector<Result>& results, bool to_stderr) {
  FILE* out = to_stderr ? stderr : stdout;
  std::fprintf(out, "%-9s %-10s %12s %9s %9s %9s %9s %9s %7s %5s %5s %9s %s\n", "scenario",
               "server", "msgs/s", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "lost",
               "dup", "err", "cpu us/m", "status");
  for (const auto& r : results) {
    std::fprintf(
        out, "%-9s %-10s %12s %9s %9s %9s %9s %9s %7llu %5llu %5llu %9s %s\n", r.scenario.c_str(),
        r.server.c_str(), fmt(r.msgs_per_s, 0).c_str(), r.has_latency ? fmt(r.p50).c_str() : "-",
        r.has_latency ? fmt(r.p90).c_str() : "-", r.has_latency ? fmt(r.p99).c_str() : "-",
        r.has_latency ? fmt(r.p999).c_str() : "-", r.has_latency ? fmt(r.max).c_str() : "-",
        static_cast<unsigned long long>(r.lost), static_cast<unsigned long long>(r.duplicates),
        static_cast<unsigned long long>(r.errors), fmt(r.server_cpu_us_per_msg, 2).c_str(),
        r.ok ? "ok" : "FAIL");
  }
  for (const auto& r : results) {
    std::fprintf(out, "  %s/%s:", r.scenario.c_str(), r.server.c_str());
    for (const auto& [k, v] : r.params)
      std::fprintf(out, " %s=%lld", k.c_str(), static_cast<long long>(v));
    std::fprintf(out, " sent=%llu recv=%llu secs=%.2f server_cpu_s=%s bench_cpu_s=%.2f",
                 static_cast<unsigned long long>(r.sent),
                 static_cast<unsigned long long>(r.received), r.seconds,
                 fmt(r.server_cpu_s, 2).c_str(), r.bench_cpu_s);
    if (r.bytes_per_conn >= 0 || r.rss_before_kb >= 0)
      std::fprintf(out, " rss_before_kb=%s rss_after_kb=%s bytes_per_conn=%s",
                   fmt(r.rss_before_kb, 0).c_str(), fmt(r.rss_after_kb, 0).c_str(),
                   fmt(r.bytes_per_conn, 0).c_str());
    for (const auto& [k, v] : r.extra) std::fprintf(out, " %s=%s", k.c_str(), fmt(v, 2).c_str());
    if (!r.first_error.empty()) std::fprintf(out, " first_error=\"%s\"", r.first_error.c_str());
    std::fprintf(out, "\n");
  }
  std::fflush(out);
}

std::string to_json(const std::vector<Result>& results, const std::string& run_id) {
  std::string o = "{\"tool\":\"mesh-bench\",\"run\":\"" + json_escape(run_id) + "\",\"results\":[";
  bool first = true;
  for (const auto& r : results) {
    if (!first) o += ",";
    first = false;
    o += "\n{\"scenario\":\"" + json_escape(r.scenario) + "\",\"server\":\"" +
         json_escape(r.server) + "\",\"ok\":" + (r.ok ? "true" : "false") + ",\"params\":{";
    for (size_t i = 0; i < r.params.size(); ++i) {
      if (i) o += ",";
      o += '"';
      o += json_escape(r.params[i].first);
      o += "\":";
      o += std::to_string(r.params[i].second);
    }
    o += "},\"sent\":" + std::to_string(r.sent) + ",\"received\":" + std::to_string(r.received) +
         ",\"lost\":" + std::to_string(r.lost) + ",\"duplicates\":" + std::to_string(r.duplicates) +
         ",\"errors\":" + std::to_string(r.errors) + ",\"seconds\":" + jnum(r.seconds) +
         ",\"msgs_per_s\":" + jnum(r.msgs_per_s);
    if (r.has_latency) {
      o += ",\"latency_us\":{\"p50\":" + jnum(r.p50) + ",\"p90\":" + jnum(r.p90) +
           ",\"p99\":" + jnum(r.p99) + ",\"p99_9\":" + jnum(r.p999) + ",\"max\":" + jnum(r.max) +
           ",\"samples\":" + std::to_string(r.latency_samples) + "}";
    }
    auto opt = [&](const char* key, double v) {
      o += std::string(",\"") + key + "\":" + (v < 0 ? std::string("null") : jnum(v));
    };
    opt("server_cpu_s", r.server_cpu_s);
    opt("server_cpu_us_per_msg", r.server_cpu_us_per_msg);
    opt("bench_cpu_s", r.bench_cpu_s);
    opt("rss_before_kb", r.rss_before_kb);
    opt("rss_after_kb", r.rss_after_kb);
    opt("bytes_per_conn", r.bytes_per_conn);
    o += ",\"extra\":{";
    for (size_t i = 0; i < r.extra.size(); ++i) {
      if (i) o += ",";
      o += '"';
      o += json_escape(r.extra[i].first);
      o += "\":";
      o += jnum(r.extra[i].second);
    }
    o += "}";
    if (!r.first_error.empty()) o += ",\"first_error\":\"" + json_escape(r.first_error) + "\"";
    o += "}";
  }
  o += "\n]}\n";
  return o;
}

}  // namespace mesh::bench
