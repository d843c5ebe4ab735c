// GET /status in a real browser: Debian's chromium, headless, driven over
// the Chrome DevTools Protocol with the tests' own WebSocket client, against
// a real relay with real nodes. A screenshot is written on failure
// (status-page-failure.png in the test's working directory).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <signal.h>
#include <sodium.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "mesh/proto/codec.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr char kToken[] = "status-page-admin-token-0123456789";

std::string chromiumBinary() {
  if (const char* env = std::getenv("MESH_CHROMIUM")) return env;
  return "chromium";
}

bool haveChromium() {
  const std::string cmd = "command -v " + chromiumBinary() + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

std::string quoteJs(const std::string& text) {
  std::string out;
  proto::appendJsonString(out, text);
  return out;
}

// Headless chromium in its own process group, with a fresh profile; the
// group is killed when the object goes.
class Chromium {
 public:
  explicit Chromium(const TempDir& dir) {
    const std::string profile = (dir.path() / "profile").string();
    const std::string log = (dir.path() / "chromium.log").string();
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      const std::string bin = chromiumBinary();
      const std::string dataDir = "--user-data-dir=" + profile;
      execlp(bin.c_str(), bin.c_str(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--disable-default-apps", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", dataDir.c_str(), "about:blank",
             static_cast<char*>(nullptr));
      _exit(127);
    }
    // The port it chose is in DevToolsActivePort once it listens.
    const auto deadline = Clock::now() + 30s;
    while (Clock::now() < deadline && port_ == 0) {
      std::ifstream in(profile + "/DevToolsActivePort");
      int port = 0;
      if (in >> port && port > 0) port_ = static_cast<std::uint16_t>(port);
      if (port_ == 0) std::this_thread::sleep_for(100ms);
    }
    if (port_ == 0) {
      std::ifstream in(log);
      const std::string text((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
      throw std::runtime_error("chromium did not open its DevTools port: " + text);
    }
  }
  ~Chromium() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Chromium(const Chromium&) = delete;
  Chromium& operator=(const Chromium&) = delete;

  // A WebSocket to the first page's DevTools endpoint.
  std::unique_ptr<WsClient> connectToPage() const {
    const auto deadline = Clock::now() + 15s;
    while (Clock::now() < deadline) {
      const auto list = httpRequest(port_, "GET", "/json/list");
      const auto doc = json(list.body);
      if (doc.IsArray()) {
        for (const auto& target : doc.GetArray()) {
          if (std::string(target["type"].GetString()) != "page") continue;
          const std::string url = target["webSocketDebuggerUrl"].GetString();
          const auto path = url.find("/devtools/");
          ConnectOptions options;
          options.path = url.substr(path);
          return WsClient::connect(port_, options);
        }
      }
      std::this_thread::sleep_for(100ms);
    }
    throw std::runtime_error("chromium shows no page target");
  }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

// Commands and events of the DevTools protocol over one page's socket.
class DevTools {
 public:
  explicit DevTools(std::unique_ptr<WsClient> ws) : ws_(std::move(ws)) {}

  // Sends a command and returns its answer's "result" as JSON text.
  std::string call(const std::string& method, const std::string& params = "{}") {
    // Requests held by Fetch.enable are answered first, with `blockedStatus`.
    while (!paused_.empty()) {
      const std::string request = paused_.back();
      paused_.pop_back();
      send("Fetch.fulfillRequest", "{\"requestId\":" + quoteJs(request) +
                                       ",\"responseCode\":" + std::to_string(blockedStatus) + "}");
    }
    return send(method, params);
  }

  // The status a request held by Fetch.enable is answered with.
  int blockedStatus = 403;

 private:
  std::string send(const std::string& method, const std::string& params) {
    const int id = nextId_++;
    ws_->sendText("{\"id\":" + std::to_string(id) + ",\"method\":\"" + method +
                  "\",\"params\":" + params + "}");
    const auto deadline = Clock::now() + 20s;
    while (Clock::now() < deadline) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      const WsMessage m = ws_->recv(std::max(left, 1ms));
      if (m.kind != WsMessage::Kind::Text) break;
      rapidjson::Document d;
      d.Parse(m.data.c_str(), m.data.size());
      if (d.HasParseError() || !d.IsObject()) continue;
      if (d.HasMember("method")) {
        noteEvent(d);
        continue;
      }
      if (!d.HasMember("id") || d["id"].GetInt() != id) continue;
      if (d.HasMember("error")) throw std::runtime_error(method + " failed: " + m.data);
      return jsonText(d["result"]);
    }
    throw std::runtime_error(method + ": no answer from chromium");
  }

 public:
  // The value of a JavaScript expression in the page, as JSON text.
  std::string eval(const std::string& expression) {
    const std::string result = call(
        "Runtime.evaluate", "{\"expression\":" + quoteJs(expression) + ",\"returnByValue\":true}");
    const auto d = json(result);
    if (d.HasMember("exceptionDetails")) {
      throw std::runtime_error("evaluating " + expression + ": " + result);
    }
    const auto& r = d["result"];
    return r.HasMember("value") ? jsonText(r["value"]) : "undefined";
  }

  // Waits until `condition` (JavaScript) is true; the page polls every 2 s.
  bool waitFor(const std::string& condition, std::chrono::milliseconds timeout = 15s) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (eval("Boolean(" + condition + ")") == "true") return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  // Console errors, uncaught exceptions and error log entries other than
  // failed requests; and failed requests (a refused token is one).
  std::vector<std::string> errors;
  std::vector<std::string> failedRequests;

  void screenshot(const std::string& file) {
    const auto d = json(call("Page.captureScreenshot", R"({"format":"png"})"));
    const std::string b64 = d["data"].GetString();
    std::string png(b64.size(), '\0');
    std::size_t len = 0;
    if (sodium_base642bin(reinterpret_cast<unsigned char*>(png.data()), png.size(), b64.data(),
                          b64.size(), nullptr, &len, nullptr,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
      return;
    }
    png.resize(len);
    std::ofstream(file, std::ios::binary) << png;
  }

 private:
  static std::string jsonText(const rapidjson::Value& v) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    v.Accept(writer);
    return {buffer.GetString(), buffer.GetSize()};
  }

  void noteEvent(const rapidjson::Document& d) {
    const std::string method = d["method"].GetString();
    const auto& p = d["params"];
    if (method == "Runtime.consoleAPICalled") {
      const std::string type = p["type"].GetString();
      if (type == "error" || type == "assert")
        errors.push_back("console." + type + ": " + jsonText(p["args"]));
    } else if (method == "Fetch.requestPaused") {
      paused_.push_back(p["requestId"].GetString());
    } else if (method == "Runtime.exceptionThrown") {
      errors.push_back("exception: " + jsonText(p["exceptionDetails"]));
    } else if (method == "Log.entryAdded") {
      const auto& e = p["entry"];
      if (std::string(e["level"].GetString()) != "error") return;
      const std::string text = jsonText(e);
      if (std::string(e["source"].GetString()) == "network") {
        failedRequests.push_back(text);
      } else {
        errors.push_back(text);
      }
    }
  }

  std::unique_ptr<WsClient> ws_;
  int nextId_ = 1;
  std::vector<std::string> paused_;  // Fetch.requestPaused ids not answered yet
};

class StatusPage : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!haveChromium()) {
      GTEST_SKIP() << "chromium not installed (tools/setup-debian.sh installs it)";
    }
    relay = std::make_unique<TestRelay>([](relay::Config& c) { c.adminToken = kToken; });
    browser = std::make_unique<Chromium>(dir);
    page = std::make_unique<DevTools>(browser->connectToPage());
    page->call("Runtime.enable");
    page->call("Log.enable");
    page->call("Page.enable");
  }

  void TearDown() override {
    if (page && HasFailure()) {
      try {
        page->screenshot("status-page-failure.png");
        std::printf("screenshot: status-page-failure.png\n");
      } catch (const std::exception& e) {
        std::printf("no screenshot: %s\n", e.what());
      }
    }
  }

  void open() {
    page->call("Page.navigate",
               "{\"url\":\"http://127.0.0.1:" + std::to_string(relay->port()) + "/status\"}");
    ASSERT_TRUE(
        page->waitFor("document.readyState === 'complete' && "
                      "!document.getElementById('login').hidden"));
  }

  void login(const std::string& token) {
    page->eval("document.getElementById('token').value = " + quoteJs(token) +
               "; document.getElementById('login-form').requestSubmit(); true");
  }

  std::string text(const std::string& selector) {
    return page->eval("(document.querySelector(" + quoteJs(selector) + ") || {}).textContent");
  }

  TempDir dir;
  std::unique_ptr<TestRelay> relay;
  std::unique_ptr<Chromium> browser;
  std::unique_ptr<DevTools> page;
};

TEST_F(StatusPage, ShowsAMeshAndItsRefusedFrame) {
  ASSERT_NO_FATAL_FAILURE(open());
  login(kToken);
  ASSERT_TRUE(
      page->waitFor("!document.getElementById('dashboard').hidden && "
                    "document.getElementById('f-registered').textContent === '0'"));
  EXPECT_EQ(page->eval("sessionStorage.getItem('mesh-relay-admin-token')"), quoteJs(kToken));
  EXPECT_EQ(page->eval("localStorage.length"), "0");
  EXPECT_NE(text("#version").find("version 0.1.0"), std::string::npos);

  // A mesh connects: it shows up online.
  auto node = relay->join("browser-mesh");
  const std::string row = "#meshes tr[data-mesh='browser-mesh']";
  ASSERT_TRUE(page->waitFor("(document.querySelector(\"" + row +
                            " td:nth-child(2)\") || {}).textContent === 'yes'"));
  ASSERT_TRUE(page->waitFor("document.getElementById('f-online').textContent === '1'"));

  // It sends a frame the relay refuses; its recorder shows why.
  node->sendText(R"({"type":"gateway_relay","id":"refused-1"})");
  EXPECT_EQ(jsonString(node->expectType("error"), "code"), "invalid_frame");
  page->eval("document.querySelector(\"" + row + " button\").click(); true");
  ASSERT_TRUE(page->waitFor(
      "!document.getElementById('recorder').hidden && "
      "document.querySelector('#records tbody').textContent.includes('invalid_frame') && "
      "document.querySelector('#records tbody').textContent.includes('refused-1')"));
  // The choice moved the focus to the recorder, for keyboard users.
  EXPECT_EQ(page->eval("document.activeElement.id"), "\"recorder-title\"");
  ASSERT_TRUE(page->waitFor(
      "document.querySelector('#refusals tbody').textContent.includes('invalid_frame')"));
  ASSERT_TRUE(page->waitFor("(document.querySelector(\"" + row +
                            " td:nth-child(6)\") || {}).textContent.startsWith('invalid_frame')"));

  // Search narrows the table.
  auto other = relay->join("another-mesh");
  ASSERT_TRUE(page->waitFor("document.querySelectorAll('#meshes tbody tr').length === 2"));
  page->eval(
      "const s = document.getElementById('search'); s.value = 'browser';"
      "s.dispatchEvent(new Event('input')); true");
  EXPECT_EQ(page->eval("document.querySelectorAll('#meshes tbody tr').length"), "1");

  if (const char* shot = std::getenv("MESH_STATUS_SCREENSHOT")) {
    page->call("Emulation.setDeviceMetricsOverride",
               R"({"width":1100,"height":1000,"deviceScaleFactor":1,"mobile":false})");
    page->waitFor("document.querySelector('#records tbody').rows.length > 0");
    page->screenshot(shot);
  }

  // Readable on a phone: nothing wider than the screen but the tables'
  // own scrolling boxes.
  page->call("Emulation.setDeviceMetricsOverride",
             R"({"width":390,"height":844,"deviceScaleFactor":2,"mobile":true})");
  ASSERT_TRUE(page->waitFor("document.documentElement.scrollWidth <= 390"))
      << page->eval("document.documentElement.scrollWidth");

  page->call("Runtime.evaluate", R"({"expression":"1"})");  // collect late events
  EXPECT_TRUE(page->errors.empty()) << ::testing::PrintToString(page->errors);
  EXPECT_TRUE(page->failedRequests.empty()) << ::testing::PrintToString(page->failedRequests);
  expectRelayStillServes(*relay);
}

TEST_F(StatusPage, RefusesAWrongToken) {
  ASSERT_NO_FATAL_FAILURE(open());
  login("not-the-admin-token");
  ASSERT_TRUE(page->waitFor(
      "document.getElementById('login-error').textContent.includes('refused this token')"));
  EXPECT_EQ(page->eval("document.getElementById('dashboard').hidden"), "true");
  EXPECT_EQ(page->eval("sessionStorage.length"), "0");
  // The relay's 401 is the only complaint.
  EXPECT_TRUE(page->errors.empty()) << ::testing::PrintToString(page->errors);
  for (const auto& failure : page->failedRequests) {
    EXPECT_NE(failure.find("401"), std::string::npos) << failure;
  }

  // The right one then opens it; forgetting it closes it again.
  login(kToken);
  ASSERT_TRUE(page->waitFor("!document.getElementById('dashboard').hidden"));
  page->eval("document.getElementById('logout').click(); true");
  ASSERT_TRUE(page->waitFor("document.getElementById('dashboard').hidden"));
  EXPECT_EQ(page->eval("sessionStorage.length"), "0");
  EXPECT_TRUE(page->errors.empty()) << ::testing::PrintToString(page->errors);
}

// A proxy that keeps /metrics from the browser's address (the nginx
// example does) leaves the figures out but the meshes updating.
TEST_F(StatusPage, KeepsShowingMeshesWhenMetricsAreRefused) {
  page->call("Fetch.enable", R"({"patterns":[{"urlPattern":"*/metrics"}]})");
  ASSERT_NO_FATAL_FAILURE(open());
  login(kToken);
  ASSERT_TRUE(page->waitFor("!document.getElementById('dashboard').hidden"));
  auto node = relay->join("metrics-blocked");
  ASSERT_TRUE(page->waitFor(
      "(document.querySelector(\"#meshes tr[data-mesh='metrics-blocked'] td:nth-child(2)\") || "
      "{}).textContent === 'yes'"));
  ASSERT_TRUE(
      page->waitFor("document.getElementById('live').textContent.includes('figures unavailable')"));
  EXPECT_EQ(text("#f-online"), "\"-\"");
  EXPECT_TRUE(page->errors.empty()) << ::testing::PrintToString(page->errors);
  for (const auto& failure : page->failedRequests) {
    EXPECT_NE(failure.find("403"), std::string::npos) << failure;
  }
}

TEST(StatusRoute, ServesThePageItsScriptAndStyle) {
  TestRelay relay;
  const auto html = httpRequest(relay.port(), "GET", "/status");
  EXPECT_EQ(html.status, 200);
  EXPECT_NE(headerValue(html.headers, "Content-Type").find("text/html"), std::string::npos);
  EXPECT_NE(html.body.find("Content-Security-Policy"), std::string::npos);
  // Nothing from elsewhere: every reference is local.
  EXPECT_EQ(html.body.find("http://"), std::string::npos);
  EXPECT_EQ(html.body.find("https://"), std::string::npos);
  const auto js = httpRequest(relay.port(), "GET", "/status/app.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_NE(headerValue(js.headers, "Content-Type").find("javascript"), std::string::npos);
  EXPECT_NE(js.body.find("sessionStorage"), std::string::npos);
  const auto css = httpRequest(relay.port(), "GET", "/status/app.css");
  EXPECT_EQ(css.status, 200);
  EXPECT_NE(headerValue(css.headers, "Content-Type").find("text/css"), std::string::npos);
  EXPECT_EQ(httpRequest(relay.port(), "POST", "/status").status, 405);
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/status/other.js").status, 404);
}

}  // namespace
}  // namespace mesh::test
