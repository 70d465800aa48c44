// warden._core: the native half of warden. This file only assembles the module; each concept
// binds itself in its own file.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_scan(py::module_& m);
void bind_jail(py::module_& m);
void bind_seccomp(py::module_& m);
void bind_ipc(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "warden native core: Python-source scanner and sandbox set-up";
  bind_scan(m);
  bind_jail(m);
  bind_seccomp(m);
  bind_ipc(m);
}
