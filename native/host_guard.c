/* The host-safety half of a cffi-embedded vsc library, shared by the PKCS#11 shim (shim.c) and the
 * minidriver card-edge shim (md_shim.c): Python start-up in a host that may or may not run Python itself
 * (version check, RTLD_GLOBAL promotion of libpython), fork handling, the host GC held off around calls,
 * re-entry refused, and the "glue is ready" flag. The build scripts paste it after the library's own
 * types; the library defines VSC_LOG_PREFIX and the two hooks declared below. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The library's own: run once under the boot lock before the first start-up, and in a forked child. */
static void vsc_on_first_boot(void);
static void vsc_on_fork_child(void);

/* 0: start-up not tried, 1: Python and the glue are up, -1: start-up failed (refuse forever). */
static int vsc_boot_state = 0;
static int vsc_own_python = 0;
static pthread_mutex_t vsc_boot_lock = PTHREAD_MUTEX_INITIALIZER;
static PyGILState_STATE vsc_fork_gil;

static void vsc_log(const char *what, const char *detail)
{
    fprintf(stderr, VSC_LOG_PREFIX ": %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

/* Host safety around every call into Python.
 * - A Python host's cyclic GC may run in any allocation of the module's Python code, and with it any
 *   finalizer of the host, which may wait on a lock the host holds around this very call (PyKCS11's
 *   __del__ unloads under the lock its load() holds around C_Initialize) or call back into the module
 *   half-way through a state change. So, when the host is Python, the GC is off while any call is in
 *   flight: the first call to enter turns it off, the last to leave turns it back on if it was on. The
 *   counter is only touched with the GIL held. Objects are still freed by reference counting; the cycles
 *   a call leaves are collected at the host's next allocation, in the host's own code. A C host (the
 *   module started Python itself) has no finalizers of its own and keeps the GC running.
 * - Host Python code can still run inside a call in other ways (a signal handler, a profiler hook, a host
 *   that turns the GC on from another thread). A call that enters the module again from the same thread
 *   is refused at once (VSC_CALL_AS's `refused` value): it never waits on the outer call and never sees its
 *   half-made state. */
static __thread int vsc_depth = 0;
/* The count of calls in flight and what the GC was before the first: one per interpreter, not per library,
 * or a Python host calling the PKCS#11 and the minidriver library from two threads would have one library
 * turn the GC back on under the other's call. The first library to start shares its own through a capsule
 * in the sys module (vsc_share_gc_state); the fields are only touched with the GIL held.
 * on_in_child: a child forked while other threads were inside calls: their count is void there; the GC
 * they turned off goes back on at once when the forking thread holds the GIL (os.fork), else at the
 * child's first call. */
typedef struct { int calls; int was_on; int on_in_child; } vsc_gc_state;
static vsc_gc_state vsc_gc_own;
static vsc_gc_state *vsc_gc = &vsc_gc_own;
#define VSC_GC_CAPSULE "vsc_provider.gc_hold"

static void vsc_share_gc_state(void)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *found = PySys_GetObject("_vsc_gc_hold"); /* borrowed */
    if (found && PyCapsule_IsValid(found, VSC_GC_CAPSULE)) {
        vsc_gc = (vsc_gc_state *)PyCapsule_GetPointer(found, VSC_GC_CAPSULE);
    } else {
        PyObject *capsule = PyCapsule_New(&vsc_gc_own, VSC_GC_CAPSULE, NULL); /* the library is never unloaded */
        if (!capsule || PySys_SetObject("_vsc_gc_hold", capsule) != 0)
            PyErr_Clear();
        Py_XDECREF(capsule);
    }
    PyGILState_Release(gil);
}

typedef struct { PyGILState_STATE gil; int gc; } vsc_call;

static void vsc_gc_hold(vsc_call *c)
{
    c->gc = !vsc_own_python;
    if (c->gc) {
        c->gil = PyGILState_Ensure();
        if (vsc_gc->calls++ == 0) {
            vsc_gc->was_on = PyGC_Disable() || vsc_gc->on_in_child;
            vsc_gc->on_in_child = 0;
        }
    }
}

static void vsc_gc_release(vsc_call *c)
{
    if (c->gc) {
        if (--vsc_gc->calls == 0 && vsc_gc->was_on)
            PyGC_Enable();
        PyGILState_Release(c->gil);
    }
}

static int vsc_enter(vsc_call *c)
{
    if (vsc_depth)
        return 0;
    vsc_depth = 1;
    vsc_gc_hold(c);
    return 1;
}

static void vsc_leave(vsc_call *c)
{
    vsc_gc_release(c);
    vsc_depth = 0;
}


/* Enter Python for one call of a library entry point: `refused` is what a re-entrant call answers. */
#define VSC_CALL_AS(type, refused, expr) do { \
        vsc_call vsc_c; type vsc_rv; \
        if (!vsc_enter(&vsc_c)) return (refused); \
        vsc_rv = (expr); \
        vsc_leave(&vsc_c); \
        return vsc_rv; \
    } while (0)


/* What os.fork() does around fork(), for hosts that fork while another thread may hold the GIL. */
static void vsc_before_fork(void)
{
    if (vsc_own_python) {
        vsc_fork_gil = PyGILState_Ensure();
        PyOS_BeforeFork();
    }
}

static void vsc_after_fork_parent(void)
{
    if (vsc_own_python) {
        PyOS_AfterFork_Parent();
        PyGILState_Release(vsc_fork_gil);
    }
}

static void vsc_after_fork_child(void)
{
    vsc_on_fork_child();
    if (vsc_gc->calls) { /* only ever non-zero in a Python host (the libraries share it: the first resets) */
        vsc_gc->calls = 0;
        if (vsc_gc->was_on) {
            if (PyGILState_Check())
                PyGC_Enable();
            else
                vsc_gc->on_in_child = 1;
        }
    }
    if (vsc_own_python) {
        PyOS_AfterFork_Child();
        PyGILState_Release(vsc_fork_gil);
    }
}

static int vsc_boot_locked(void)
{
    vsc_call c;
    int started;
    /* A host that already runs another CPython would bind our Py_* calls to it: refuse. */
    const char *(*host_version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "Py_GetVersion");
    if (host_version) {
        const char *v = host_version();
        size_t n = strlen(VSC_PY_MAJMIN);
        if (strncmp(v, VSC_PY_MAJMIN, n) != 0 || v[n] != '.') {
            vsc_log("this module was built for Python " VSC_PY_MAJMIN " but the host process runs Python", v);
            return -1;
        }
    }
    /* Extension modules are not linked against libpython: make its symbols global before they load. */
    if (!dlopen(VSC_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD) && !host_version)
        vsc_log("could not promote " VSC_LIBPYTHON " to RTLD_GLOBAL", dlerror());

    if (!Py_IsInitialized()) {
        PyConfig config;
        PyStatus status;
        PyConfig_InitPythonConfig(&config);
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        config.use_environment = 0;
        config.user_site_directory = 0;
        /* The interpreter the package was installed into: finds its venv and site-packages. */
        status = PyConfig_SetBytesString(&config, &config.program_name, VSC_PYTHON_EXE);
        if (!PyStatus_Exception(status))
            status = Py_InitializeFromConfig(&config);
        PyConfig_Clear(&config);
        if (PyStatus_Exception(status)) {
            vsc_log("Python start-up failed", status.err_msg);
            return -1;
        }
        vsc_own_python = 1;
        PyEval_SaveThread();
    }
    vsc_share_gc_state();
    pthread_atfork(vsc_before_fork, vsc_after_fork_parent, vsc_after_fork_child);
    /* The glue's imports allocate most of all: a Python host's GC stays off for them too. */
    vsc_gc_hold(&c);
    started = cffi_start_python();
    vsc_gc_release(&c);
    if (started != 0) {
        vsc_log("the Python side of the module failed to start (see the messages above)", NULL);
        return -1;
    }
    return 1;
}

static int vsc_boot(void)
{
    pthread_mutex_lock(&vsc_boot_lock);
    if (vsc_boot_state == 0)
        vsc_on_first_boot();
    if (vsc_boot_state == 0)
        vsc_boot_state = vsc_boot_locked();
    pthread_mutex_unlock(&vsc_boot_lock);
    return vsc_boot_state;
}

/* Called by the glue once its functions are registered: proves the init code ran to the end. */
static int vsc_glue_ready = 0;
static void vsc_mark_ready(void) { vsc_glue_ready = 1; }

/* Start Python for a library's first entry point (C_Initialize, CardAcquireContext): 1 when it is up with the
 * glue ready, 0 when it cannot start, -1 for a re-entrant call (start-up runs Python too: a re-entry must not
 * wait on the boot lock it holds). */
static int vsc_start(void)
{
    int booted;
    if (vsc_depth)
        return -1;
    vsc_depth = 1;
    booted = vsc_boot() == 1 && vsc_glue_ready;
    vsc_depth = 0;
    return booted;
}
