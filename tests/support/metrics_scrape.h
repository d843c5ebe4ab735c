// Reading one figure of a relay's /metrics page in tests.
#pragma once

#include <cstdint>
#include <string>

namespace mesh::test {

// The value of one sample line of a Prometheus text page, e.g.
// `mesh_relay_relays_total{result="offline"}`; -1 when absent.
double sampleOf(const std::string& page, const std::string& series);

// The same, from GET /metrics on 127.0.0.1:`port` (which must answer 200).
double metricValue(std::uint16_t port, const std::string& series);

}  // namespace mesh::test
