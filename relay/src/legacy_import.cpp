#include "legacy_import.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "mesh/proto/codec.h"

namespace mesh::relay {
namespace {

constexpr std::size_t kSha256HexDigits = 64;
constexpr std::size_t kMaxNameBytes = 128;  // as POST /register

bool isSha256Hex(std::string_view text) {
  if (text.size() != kSha256HexDigits) return false;
  for (char c : text) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  return true;
}

// The string member `key`, or nullptr when absent or not a string.
const rapidjson::Value* stringMember(const rapidjson::Value& object, const char* key) {
  const auto it = object.FindMember(key);
  if (it == object.MemberEnd() || !it->value.IsString()) return nullptr;
  return &it->value;
}

std::string_view view(const rapidjson::Value& v) {
  return {v.GetString(), v.GetStringLength()};
}

// How an entry is named in a note: its position, and its meshId if it is
// printable (never the hash, which is as good as the secret to a guesser).
std::string label(std::size_t index, const rapidjson::Value& entry) {
  std::string out = "entry " + std::to_string(index + 1);
  if (!entry.IsObject()) return out;
  const rapidjson::Value* id = stringMember(entry, "meshId");
  if (id && proto::isValidMeshId(view(*id))) out += " (" + std::string(view(*id)) + ")";
  return out;
}

}  // namespace

LegacyImportReport importLegacyRegistry(Registry& registry, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read " + path);
  const std::string body = text.str();

  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(body.c_str(), body.size());
  if (doc.HasParseError()) {
    throw std::runtime_error(path + " is not valid JSON (at byte " +
                             std::to_string(doc.GetErrorOffset()) +
                             "): " + rapidjson::GetParseError_En(doc.GetParseError()));
  }
  if (!doc.IsArray()) {
    throw std::runtime_error(path +
                             " is not a JSON array of {\"meshId\", \"secretHash\", \"name\"}");
  }

  LegacyImportReport report;
  const auto refuse = [&report](std::string note) {
    ++report.refused;
    report.notes.push_back(std::move(note));
  };
  const auto entries = doc.GetArray();
  for (rapidjson::SizeType i = 0; i < entries.Size(); ++i) {
    const rapidjson::Value& entry = entries[i];
    const std::string who = label(i, entry);
    if (!entry.IsObject()) {
      refuse("refused " + who + ": not a JSON object");
      continue;
    }
    const rapidjson::Value* meshId = stringMember(entry, "meshId");
    const rapidjson::Value* hash = stringMember(entry, "secretHash");
    const rapidjson::Value* name = stringMember(entry, "name");
    if (!meshId || !proto::isValidMeshId(view(*meshId))) {
      refuse("refused " + who + ": bad meshId (want [A-Za-z0-9._-]{1,64})");
    } else if (!hash || !isSha256Hex(view(*hash))) {
      refuse("refused " + who + ": bad secretHash (want the 64 hex digits of a SHA-256)");
    } else if (!name || name->GetStringLength() == 0 || name->GetStringLength() > kMaxNameBytes) {
      refuse("refused " + who + ": bad name (want a string of 1 to 128 bytes)");
    } else if (registry.importLegacyMesh(view(*meshId), view(*name), view(*hash)) ==
               LegacyImportOutcome::Imported) {
      ++report.imported;
    } else {
      ++report.skipped;
      report.notes.push_back("skipped " + who + ": already registered, left as it is");
    }
  }
  return report;
}

}  // namespace mesh::relay
