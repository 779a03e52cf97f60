/* shimmfa.shim.link._wire: the relay's step for one chunk, in C, and spin(),
 * the event loop's wait that runs it for the open session (end of file).
 *
 * chunk(src, dst, sink, code, mono0) reads up to READ_SIZE bytes from the
 * non-blocking fd `src`; packs them into the bytearray `sink` (unless None)
 * as one recording entry, code (1 byte) | monotonic - mono0 (f64) | wall
 * (f64) | length (u32) | bytes, all big-endian (core/recording.py's ENTRY);
 * then writes them to the non-blocking fd `dst` (unless dst < 0). The entry
 * is packed before the write: a byte that cannot be recorded is never sent.
 *
 * Returns, as wire.py's pure-Python twin does:
 *   n > 0       n bytes read, recorded and written in full;
 *   0           end of file on src;
 *   -errno      the read failed (-EAGAIN: nothing to read), nothing done;
 *   (n, rest, error)  n bytes read and recorded, but `rest` (the tail the
 *               write did not take) is still to be written, or the write
 *               failed with `error` (rest is then empty: the bytes are lost
 *               with the other side).
 *
 * It holds the interpreter lock throughout: both fds are non-blocking, so
 * the calls return at once, and releasing the lock would let another thread
 * take it between the read and the write. EINTR is retried.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE 4096
#define ENTRY_SIZE 21

static void put_f64(char *at, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    bits = htobe64(bits);
    memcpy(at, &bits, sizeof bits);
}

/* Seconds as Python's time.monotonic() and time.time() compute them. */
static double seconds(clockid_t clock)
{
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)((int64_t)now.tv_sec * 1000000000 + now.tv_nsec) / 1e9;
}

static int as_fd(PyObject *value, int *fd)
{
    long number = PyLong_AsLong(value);
    if (number == -1 && PyErr_Occurred())
        return -1;
    if (number < -1 || number > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "not a file descriptor");
        return -1;
    }
    *fd = (int)number;
    return 0;
}

/* The step itself: read, pack, write. Returns the count read (> 0), 0 at
 * end of file, -errno when the read failed (nothing done), or -EPERM - 1000
 * when packing failed with a Python exception set. On a count > 0,
 * *written is what the write took and *error its errno (0 if none). */
#define STEP_RAISED (-100000)

static ssize_t step(int src, int dst, PyObject *sink, int code, double mono0, char *buffer,
                    ssize_t *written, int *error)
{
    ssize_t count;
    do
        count = read(src, buffer, READ_SIZE);
    while (count < 0 && errno == EINTR);
    if (count < 0)
        return -(ssize_t)errno;
    if (count == 0)
        return 0;

    if (sink != Py_None) {
        Py_ssize_t size = PyByteArray_GET_SIZE(sink);
        double monotonic = seconds(CLOCK_MONOTONIC) - mono0;
        double wall = seconds(CLOCK_REALTIME);
        if (PyByteArray_Resize(sink, size + ENTRY_SIZE + count) < 0)
            return STEP_RAISED; /* MemoryError or BufferError: the caller fails safe */
        char *entry = PyByteArray_AS_STRING(sink) + size;
        uint32_t length = htobe32((uint32_t)count);
        entry[0] = (char)code;
        put_f64(entry + 1, monotonic);
        put_f64(entry + 9, wall);
        memcpy(entry + 17, &length, sizeof length);
        memcpy(entry + ENTRY_SIZE, buffer, (size_t)count);
    }

    *written = 0;
    *error = 0;
    if (dst >= 0) {
        ssize_t result;
        do
            result = write(dst, buffer, (size_t)count);
        while (result < 0 && errno == EINTR);
        if (result >= 0)
            *written = result;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            *error = errno;
    }
    return count;
}

/* chunk()'s return value for a step that read `count` > 0 bytes. */
static PyObject *outcome(const char *buffer, ssize_t count, ssize_t written, int error)
{
    if (written == count)
        return PyLong_FromSsize_t(count);
    PyObject *rest = PyBytes_FromStringAndSize(
        error ? NULL : buffer + written, error ? 0 : (Py_ssize_t)(count - written));
    if (rest == NULL)
        return NULL;
    return Py_BuildValue("(nNi)", (Py_ssize_t)count, rest, error);
}

static int check_sink(PyObject *sink)
{
    if (sink != Py_None && !PyByteArray_CheckExact(sink)) {
        PyErr_SetString(PyExc_TypeError, "sink must be a bytearray or None");
        return -1;
    }
    return 0;
}

static int as_code(PyObject *value, int *code)
{
    long number = PyLong_AsLong(value);
    if (number == -1 && PyErr_Occurred())
        return -1;
    if (number < 0 || number > 255) {
        PyErr_SetString(PyExc_ValueError, "code must be a byte value");
        return -1;
    }
    *code = (int)number;
    return 0;
}

static int as_seconds(PyObject *value, double *result)
{
    *result = PyFloat_AsDouble(value);
    return (*result == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *chunk(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int src, dst, code;
    double mono0;
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "chunk(src, dst, sink, code, mono0) takes 5 arguments");
        return NULL;
    }
    if (as_fd(args[0], &src) < 0 || as_fd(args[1], &dst) < 0)
        return NULL;
    if (src < 0) {
        PyErr_SetString(PyExc_ValueError, "src must be a file descriptor");
        return NULL;
    }
    if (check_sink(args[2]) < 0 || as_code(args[3], &code) < 0 || as_seconds(args[4], &mono0) < 0)
        return NULL;

    char buffer[READ_SIZE];
    ssize_t written;
    int error;
    ssize_t count = step(src, dst, args[2], code, mono0, buffer, &written, &error);
    if (count == STEP_RAISED)
        return NULL;
    if (count <= 0)
        return PyLong_FromSsize_t(count);
    return outcome(buffer, count, written, error);
}

/* spin(epfd, timeout, routes, sink, mono0, batch_bytes): wait on the epoll
 * fd and do chunk() for each route whose src is readable (exactly EPOLLIN),
 * until Python has something to do; see wire.py for the return value. At
 * most MAX_ROUTES routes; events are read MAX_EVENTS at a time. The
 * interpreter lock is released only while waiting. */
#define MAX_ROUTES 4
#define MAX_EVENTS 16

struct route {
    int src, dst, code;
    Py_ssize_t moved;
};

static int parse_routes(PyObject *routes, struct route *table, Py_ssize_t *count)
{
    if (!PyTuple_Check(routes) || PyTuple_GET_SIZE(routes) > MAX_ROUTES) {
        PyErr_SetString(PyExc_TypeError, "routes must be a tuple of at most 4 (src, dst, code)");
        return -1;
    }
    *count = PyTuple_GET_SIZE(routes);
    for (Py_ssize_t i = 0; i < *count; i++) {
        PyObject *route = PyTuple_GET_ITEM(routes, i);
        if (!PyTuple_Check(route) || PyTuple_GET_SIZE(route) != 3) {
            PyErr_SetString(PyExc_TypeError, "a route is a tuple (src, dst, code)");
            return -1;
        }
        if (as_fd(PyTuple_GET_ITEM(route, 0), &table[i].src) < 0 ||
            as_fd(PyTuple_GET_ITEM(route, 1), &table[i].dst) < 0 ||
            as_code(PyTuple_GET_ITEM(route, 2), &table[i].code) < 0)
            return -1;
        if (table[i].src < 0) {
            PyErr_SetString(PyExc_ValueError, "src must be a file descriptor");
            return -1;
        }
        table[i].moved = 0;
    }
    return 0;
}

static PyObject *spin(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int epfd;
    double timeout, mono0;
    struct route table[MAX_ROUTES];
    Py_ssize_t routes, flush_at;
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "spin(epfd, timeout, routes, sink, mono0, flush_at) takes 6 arguments");
        return NULL;
    }
    if (as_fd(args[0], &epfd) < 0 || as_seconds(args[1], &timeout) < 0 ||
        parse_routes(args[2], table, &routes) < 0 || check_sink(args[3]) < 0 ||
        as_seconds(args[4], &mono0) < 0)
        return NULL;
    flush_at = PyLong_AsSsize_t(args[5]);
    if (flush_at == -1 && PyErr_Occurred())
        return NULL;
    PyObject *sink = args[3];

    PyObject *events = PyList_New(0);
    if (events == NULL)
        return NULL;
    PyObject *stop = NULL; /* (route index, chunk result) */
    Py_ssize_t last_entry = -1;
    char buffer[READ_SIZE];
    struct epoll_event ready[MAX_EVENTS];
    double deadline = timeout < 0 ? -1.0 : seconds(CLOCK_MONOTONIC) + timeout;
    int full = sink != Py_None && PyByteArray_GET_SIZE(sink) >= flush_at;

    while (!full) {
        int wait = -1;
        if (deadline >= 0) {
            double left = deadline - seconds(CLOCK_MONOTONIC);
            /* as EpollSelector: wait at least the timeout, 1 ms resolution */
            wait = 0;
            if (left > 0) {
                double ms = left * 1e3;
                wait = ms > INT_MAX ? INT_MAX : (int)ms;
                if (wait < ms && wait < INT_MAX)
                    wait++;
            }
        }
        int n;
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(epfd, ready, MAX_EVENTS, wait);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (errno == EINTR)
                break; /* the loop's signal handling runs */
            PyErr_SetFromErrno(PyExc_OSError);
            goto failed;
        }
        for (int i = 0; i < n; i++) {
            int fd = ready[i].data.fd;
            uint32_t mask = ready[i].events;
            Py_ssize_t r = 0;
            while (r < routes && table[r].src != fd)
                r++;
            if (r == routes || mask != EPOLLIN) {
                PyObject *event = Py_BuildValue("(iI)", fd, (unsigned int)mask);
                if (event == NULL || PyList_Append(events, event) < 0) {
                    Py_XDECREF(event);
                    goto failed;
                }
                Py_DECREF(event);
                continue;
            }
            if (stop != NULL || full)
                continue; /* level-triggered: it is reported again next time */
            ssize_t written;
            int error;
            Py_ssize_t before = sink == Py_None ? 0 : PyByteArray_GET_SIZE(sink);
            ssize_t count = step(fd, table[r].dst, sink, table[r].code, mono0, buffer, &written,
                                 &error);
            if (count == STEP_RAISED)
                goto failed;
            if (count > 0 && sink != Py_None)
                last_entry = before;
            if (count > 0 && written == count) {
                table[r].moved += count;
            } else if (count != -EAGAIN && count != -EWOULDBLOCK) {
                PyObject *result =
                    count > 0 ? outcome(buffer, count, written, error) : PyLong_FromSsize_t(count);
                if (result == NULL)
                    goto failed;
                stop = Py_BuildValue("(nN)", r, result);
                if (stop == NULL)
                    goto failed;
            }
            if (sink != Py_None && PyByteArray_GET_SIZE(sink) >= flush_at)
                full = 1;
        }
        if (n == 0 || stop != NULL || full || PyList_GET_SIZE(events) > 0)
            break;
        if (deadline >= 0 && seconds(CLOCK_MONOTONIC) >= deadline)
            break;
    }

    PyObject *moved = PyTuple_New(routes);
    if (moved == NULL)
        goto failed;
    for (Py_ssize_t r = 0; r < routes; r++) {
        PyObject *count = PyLong_FromSsize_t(table[r].moved);
        if (count == NULL) {
            Py_DECREF(moved);
            goto failed;
        }
        PyTuple_SET_ITEM(moved, r, count);
    }
    if (stop == NULL) {
        Py_INCREF(Py_None);
        stop = Py_None;
    }
    return Py_BuildValue("(NNnN)", events, moved, last_entry, stop);

failed:
    Py_DECREF(events);
    Py_XDECREF(stop);
    return NULL;
}

static PyMethodDef methods[] = {
    {"chunk", (PyCFunction)(void (*)(void))chunk, METH_FASTCALL,
     "chunk(src, dst, sink, code, mono0): read, record and write one chunk (see wire.py)."},
    {"spin", (PyCFunction)(void (*)(void))spin, METH_FASTCALL,
     "spin(epfd, timeout, routes, sink, mono0, flush_at): wait and relay (see wire.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_wire",
    .m_doc = "The relay's step for one chunk, in C (see wire.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__wire(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddIntConstant(module, "READ_SIZE", READ_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "ENTRY_SIZE", ENTRY_SIZE) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
