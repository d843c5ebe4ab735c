#include "support/metrics_scrape.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "support/ws_client.h"

namespace mesh::test {

double sampleOf(const std::string& page, const std::string& series) {
  std::size_t pos = 0;
  while ((pos = page.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || page[pos - 1] == '\n') {
      return std::strtod(page.c_str() + pos + series.size() + 1, nullptr);
    }
    pos += series.size();
  }
  return -1;
}

double metricValue(std::uint16_t port, const std::string& series) {
  const auto r = httpRequest(port, "GET", "/metrics");
  EXPECT_EQ(r.status, 200) << r.body;
  return sampleOf(r.body, series);
}

}  // namespace mesh::test
