// warden._core seccomp functions: the compiled filter as bytes (Python caches it and passes it
// to spawn) and the policy tables as plain Python data (Docker profile, `warden doctor`).
#include <pybind11/pybind11.h>

#include <cerrno>
#include <string>
#include <vector>

#include "jail/seccomp.h"
#include "jail/seccomp_policy.h"

namespace py = pybind11;
namespace sc = warden::seccomp;

namespace {

py::bytes compile(bool allow_inet) {
  std::vector<sock_filter> prog;
  std::string err;
  int rc;
  {
    py::gil_scoped_release release;
    rc = sc::compile({.allow_inet = allow_inet}, &prog, &err);
  }
  if (rc < 0) {
    // OSError(errno, message): the Python side names the step (SandboxSetupError).
    py::object exc =
        py::module_::import("builtins").attr("OSError")(-rc, "seccomp compile: " + err);
    PyErr_SetObject(PyExc_OSError, exc.ptr());
    throw py::error_already_set();
  }
  return py::bytes(reinterpret_cast<const char*>(prog.data()), prog.size() * sizeof(sock_filter));
}

py::str str(std::string_view s) { return py::str(s.data(), s.size()); }

py::dict policy(bool allow_inet) {
  py::dict out;
  out["default_action"] = "errno";
  out["default_errno"] = EPERM;
  out["bad_arch_action"] = "kill_process";
  py::list allowed;
  for (std::string_view n : sc::allowed()) allowed.append(str(n));
  out["allowed"] = allowed;
  py::list denied;
  for (const sc::Denied& d : sc::denied()) {
    py::dict e;
    e["syscall"] = str(d.syscall);
    e["errno"] = EPERM;
    e["why"] = str(d.why);
    denied.append(e);
  }
  out["denied"] = denied;
  py::list errnos;
  for (const sc::ErrnoRule& r : sc::errno_rules()) {
    py::dict e;
    e["syscall"] = str(r.syscall);
    e["errno"] = r.err;
    e["why"] = str(r.why);
    errnos.append(e);
  }
  out["errno_rules"] = errnos;
  py::list conditional;
  for (const sc::ArgRule& r : sc::arg_rules({.allow_inet = allow_inet})) {
    py::dict e;
    e["syscall"] = str(r.syscall);
    e["arg"] = r.match.arg;
    e["op"] = "masked_eq";
    e["mask"] = r.match.mask;
    e["value"] = r.match.value;
    e["why"] = str(r.why);
    conditional.append(e);
  }
  out["conditional"] = conditional;
  py::list arches;
  for (std::string_view a : sc::killed_arches()) arches.append(str(a));
  out["killed_arches"] = arches;
  // What this build of libseccomp resolves on this architecture; names it does not know are
  // left out of the filter and so refused (fail closed).
  py::dict numbers;
  for (std::string_view n : sc::allowed()) numbers[str(n)] = sc::native_number(n);
  for (const sc::ErrnoRule& r : sc::errno_rules())
    numbers[str(r.syscall)] = sc::native_number(r.syscall);
  for (const sc::ArgRule& r : sc::arg_rules({.allow_inet = allow_inet}))
    numbers[str(r.syscall)] = sc::native_number(r.syscall);
  for (const sc::Denied& d : sc::denied()) numbers[str(d.syscall)] = sc::native_number(d.syscall);
  out["native_numbers"] = numbers;
  return out;
}

}  // namespace

void bind_seccomp(py::module_& m) {
  m.def("seccomp_compile", &compile, py::arg("allow_inet") = false,
        "Compile warden's seccomp policy to classic BPF for the native architecture; returns the "
        "raw sock_filter array. Raises OSError naming the failed libseccomp call.");
  m.def("seccomp_policy", &policy, py::arg("allow_inet") = false,
        "warden's seccomp policy tables: allowed, denied (EPERM), errno_rules, conditional "
        "(masked_eq argument rules), killed_arches, native_numbers (-1: not on this arch).");
}
