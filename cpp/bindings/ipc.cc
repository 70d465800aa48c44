// warden._core: waiting on a channel's socket, and what decoding a frame would cost (cpp/ipc).
#include <pybind11/pybind11.h>

#include <cerrno>

#include "ipc/decode_cost.h"
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

int64_t decode_cost(const py::buffer& body, int64_t budget, uint32_t max_depth) {
  // A read-only, contiguous view: the body cannot change or move while it is walked without
  // the GIL (a bytearray refuses to resize while a view of it is held).
  py::buffer_info info = body.request();
  if (info.ndim != 1 || info.itemsize != 1 || info.strides[0] != 1) {
    throw py::value_error("decode_cost needs a contiguous buffer of bytes");
  }
  const auto* data = static_cast<const uint8_t*>(info.ptr);
  const auto size = static_cast<size_t>(info.size);
  py::gil_scoped_release nogil;
  return ipc::decode_cost(data, size, budget, max_depth);
}

}  // namespace

void bind_ipc(py::module_& m) {
  m.def("wait_readable", &wait_readable, py::arg("fd"), py::arg("spin_ns"),
        py::arg("timeout_ms"),
        "Wait until fd is readable: polling without sleeping for up to spin_ns, then asleep "
        "for the rest of timeout_ms (-1: no limit). 0: timed out, 1: readable while "
        "spinning, 2: readable after sleeping, 3: a signal came and its handlers ran (wait "
        "again). OSError when poll(2) fails.");
  m.def("decode_cost", &decode_cost, py::arg("body"), py::arg("budget"), py::arg("max_depth"),
        "Upper estimate in bytes of the Python objects that decoding the one msgpack value in "
        "body would make, found without decoding it and without the GIL; -1: over budget "
        "(the walk stopped there), -2: not exactly one msgpack value or an extension type, "
        "-3: containers nested deeper than max_depth.");
  m.attr("DECODE_COST_PER_BYTE") = ipc::kMaxPerByte;
}
