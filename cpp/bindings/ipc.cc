// warden._core: waiting on a channel's socket (cpp/ipc).
#include <pybind11/pybind11.h>

#include <cerrno>

#include "ipc/wait.h"

namespace py = pybind11;

namespace {

constexpr int kInterrupted = 3;

int wait_readable(int fd, int64_t spin_ns, int timeout_ms) {
  int r;
  {
    py::gil_scoped_release nogil;
    r = ipc::wait_readable(fd, spin_ns, timeout_ms);
  }
  if (r == -EINTR) {
    // A signal came: Python runs its handlers now (a KeyboardInterrupt raises from here),
    // and the caller waits again for what is left of its deadline.
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    return kInterrupted;
  }
  if (r < 0) {
    errno = -r;
    PyErr_SetFromErrno(PyExc_OSError);
    throw py::error_already_set();
  }
  return r;
}

}  // namespace

void bind_ipc(py::module_& m) {
  m.def("wait_readable", &wait_readable, py::arg("fd"), py::arg("spin_ns"),
        py::arg("timeout_ms"),
        "Wait until fd is readable: polling without sleeping for up to spin_ns, then asleep "
        "for the rest of timeout_ms (-1: no limit). 0: timed out, 1: readable while "
        "spinning, 2: readable after sleeping, 3: a signal came and its handlers ran (wait "
        "again). OSError when poll(2) fails.");
}
