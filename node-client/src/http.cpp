#include "mesh/client/http.h"

#include <rapidjson/document.h>
#include <sodium.h>

#include <stdexcept>

#include "json.h"

namespace mesh::client {
namespace {

// Answers come from whatever listens at the relay's address: parsed without
// recursion, so a deeply nested body cannot exhaust the stack.
constexpr unsigned kParseFlags = rapidjson::kParseIterativeFlag;

// The "error" text of a relay answer, or the body itself.
std::string reasonOf(const HttpAnswer& r) {
  rapidjson::Document doc;
  doc.Parse<kParseFlags>(r.body.data(), r.body.size());
  if (!doc.HasParseError() && doc.IsObject()) {
    const auto it = doc.FindMember("error");
    if (it != doc.MemberEnd() && it->value.IsString()) return it->value.GetString();
  }
  return r.body.empty() ? "(empty body)" : r.body;
}

std::string trimSlash(std::string base) {
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base;
}

}  // namespace

Result<RegisterOutcome> registerMesh(const std::string& httpBaseUrl, const std::string& meshId,
                                     const std::string& secret, const std::string& name,
                                     std::chrono::milliseconds timeout, const std::string& caFile,
                                     const std::string& proxy, const std::string& noProxy) {
  detail::JsonOut body;
  body.beginObject();
  body.field("meshId", meshId);
  body.field("secret", secret);
  body.field("name", name);
  body.endObject();
  auto answer = httpRequest("POST", trimSlash(httpBaseUrl) + "/register", body.take(), {}, timeout,
                            caFile, proxy, noProxy);
  if (!answer) return answer.error();
  const auto& r = answer.value();
  switch (r.status) {
    case 201:
      return RegisterOutcome{true};
    case 200:
      return RegisterOutcome{false};
    case 409:
      return Error{Status::RegistrationConflict,
                   "meshId '" + meshId +
                       "' is registered with another secret (check MESH_SECRET, or choose "
                       "another MESH_ID)"};
    case 400:
      return Error{Status::InvalidArgument, "relay refused registration: " + reasonOf(r)};
    default:
      return Error{Status::HttpError,
                   "POST /register answered " + std::to_string(r.status) + ": " + reasonOf(r)};
  }
}

Result<HealthReport> checkHealth(const std::string& httpBaseUrl, std::chrono::milliseconds timeout,
                                 const std::string& caFile, const std::string& proxy,
                                 const std::string& noProxy) {
  auto answer = httpRequest("GET", trimSlash(httpBaseUrl) + "/health", {}, {}, timeout, caFile,
                            proxy, noProxy);
  if (!answer) return answer.error();
  const auto& r = answer.value();
  if (r.status != 200) {
    return Error{Status::HttpError,
                 "GET /health answered " + std::to_string(r.status) + ": " + reasonOf(r)};
  }
  HealthReport report;
  report.body = r.body;
  rapidjson::Document doc;
  doc.Parse<kParseFlags>(r.body.data(), r.body.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return Error{Status::ProtocolError, "GET /health answered something other than JSON"};
  }
  const auto it = doc.FindMember("connected");
  if (it != doc.MemberEnd() && it->value.IsInt()) report.connected = it->value.GetInt();
  return report;
}

std::string generateSecret() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium cannot initialise");
  unsigned char raw[32];
  randombytes_buf(raw, sizeof raw);
  char text[sodium_base64_ENCODED_LEN(sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(text, sizeof text, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(raw, sizeof raw);
  return text;
}

}  // namespace mesh::client
