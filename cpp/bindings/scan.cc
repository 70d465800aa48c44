// Binds the scanner: converts Python values to the C++ policy and back, releases the GIL while
// scanning. Nothing else happens here.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "scan/batch.h"
#include "scan/scan.h"

namespace py = pybind11;
namespace ws = warden::scan;

namespace {

using FindingTuple = std::tuple<std::string, uint32_t, uint32_t, std::string>;

std::vector<FindingTuple> to_tuples(const std::vector<ws::Finding>& fs) {
  std::vector<FindingTuple> out;
  out.reserve(fs.size());
  for (const auto& f : fs) out.emplace_back(ws::rule_id(f.rule), f.line, f.col, f.message);
  return out;
}

ws::Policy make_policy(const std::vector<std::string>& forbidden_modules,
                       const std::vector<std::string>& allowed_modules,
                       const std::vector<std::string>& forbidden_builtins,
                       const std::vector<std::string>& forbidden_names,
                       const std::vector<std::string>& forbidden_attributes,
                       const std::string& package) {
  ws::Policy p;
  p.forbidden_modules.insert(forbidden_modules.begin(), forbidden_modules.end());
  p.allowed_modules.insert(allowed_modules.begin(), allowed_modules.end());
  for (const auto& s : forbidden_builtins) p.forbidden_builtins.insert(s);
  for (const auto& s : forbidden_names) p.forbidden_names.insert(s);
  for (const auto& s : forbidden_attributes) p.forbidden_attributes.insert(s);
  p.package = package;
  return p;
}

py::tuple stats_tuple(const ws::Stats& s) { return py::make_tuple(s.bytes, s.tokens, s.steps); }

}  // namespace

void bind_scan(py::module_& m) {
  py::class_<ws::Policy>(m, "ScanPolicy", "A compiled scan policy (built by warden.Policy).")
      .def(py::init(&make_policy), py::arg("forbidden_modules"), py::arg("allowed_modules"),
           py::arg("forbidden_builtins"), py::arg("forbidden_names"),
           py::arg("forbidden_attributes"), py::arg("package"));

  m.def(
      "scan_source",
      [](py::bytes data, bool is_text, const ws::Policy& policy) {
        std::string_view view = data;  // `data` keeps the immutable buffer alive
        ws::Result r;
        {
          py::gil_scoped_release nogil;
          r = ws::scan_source(view, is_text ? ws::InputKind::Text : ws::InputKind::Bytes, policy);
        }
        return py::make_tuple(to_tuples(r.findings), stats_tuple(r.stats));
      },
      py::arg("data"), py::arg("is_text"), py::arg("policy"),
      "Scans one source; returns ([(rule, line, col, message)], (bytes, tokens, steps)).");

  m.def(
      "scan_paths",
      [](const std::vector<std::string>& paths, const ws::Policy& policy, unsigned threads,
         uint64_t max_file_bytes) {
        std::vector<ws::FileResult> rs;
        {
          py::gil_scoped_release nogil;
          rs = ws::scan_files(paths, policy, threads, max_file_bytes);
        }
        py::list out;
        for (const auto& r : rs) {
          if (r.read_ok) out.append(py::make_tuple(true, to_tuples(r.result.findings)));
          else
            out.append(py::make_tuple(false, py::make_tuple(ws::read_error_id(r.error), r.err_no)));
        }
        return out;
      },
      py::arg("paths"), py::arg("policy"), py::arg("threads"), py::arg("max_file_bytes"),
      "Scans files on C++ threads; per path (True, findings) or (False, (reason id, errno)).");
}
