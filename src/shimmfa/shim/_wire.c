/* shimmfa.shim._wire: the relay's step for one chunk, in C.
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

static PyObject *chunk(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int src, dst;
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
    PyObject *sink = args[2];
    if (sink != Py_None && !PyByteArray_CheckExact(sink)) {
        PyErr_SetString(PyExc_TypeError, "sink must be a bytearray or None");
        return NULL;
    }
    long code = PyLong_AsLong(args[3]);
    if (code == -1 && PyErr_Occurred())
        return NULL;
    if (code < 0 || code > 255) {
        PyErr_SetString(PyExc_ValueError, "code must be a byte value");
        return NULL;
    }
    double mono0 = PyFloat_AsDouble(args[4]);
    if (mono0 == -1.0 && PyErr_Occurred())
        return NULL;

    char buffer[READ_SIZE];
    ssize_t count;
    do
        count = read(src, buffer, sizeof buffer);
    while (count < 0 && errno == EINTR);
    if (count < 0)
        return PyLong_FromLong(-(long)errno);
    if (count == 0)
        return PyLong_FromLong(0);

    if (sink != Py_None) {
        Py_ssize_t size = PyByteArray_GET_SIZE(sink);
        double monotonic = seconds(CLOCK_MONOTONIC) - mono0;
        double wall = seconds(CLOCK_REALTIME);
        if (PyByteArray_Resize(sink, size + ENTRY_SIZE + count) < 0)
            return NULL; /* MemoryError or BufferError: the caller fails safe */
        char *entry = PyByteArray_AS_STRING(sink) + size;
        uint32_t length = htobe32((uint32_t)count);
        entry[0] = (char)code;
        put_f64(entry + 1, monotonic);
        put_f64(entry + 9, wall);
        memcpy(entry + 17, &length, sizeof length);
        memcpy(entry + ENTRY_SIZE, buffer, (size_t)count);
    }

    ssize_t written = 0;
    int error = 0;
    if (dst >= 0) {
        ssize_t result;
        do
            result = write(dst, buffer, (size_t)count);
        while (result < 0 && errno == EINTR);
        if (result >= 0)
            written = result;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            error = errno;
    }
    if (written == count)
        return PyLong_FromSsize_t(count);
    PyObject *rest = PyBytes_FromStringAndSize(
        error ? NULL : buffer + written, error ? 0 : (Py_ssize_t)(count - written));
    if (rest == NULL)
        return NULL;
    return Py_BuildValue("(nNi)", (Py_ssize_t)count, rest, error);
}

static PyMethodDef methods[] = {
    {"chunk", (PyCFunction)(void (*)(void))chunk, METH_FASTCALL,
     "chunk(src, dst, sink, code, mono0): read, record and write one chunk (see wire.py)."},
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
