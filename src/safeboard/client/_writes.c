/* The SDK's system calls that run beside a training loop, each made in one call that
   never holds the interpreter lock.

   write_atomic(tmp, path, data, mode): creates tmp (O_EXCL, with mode), writes all of
   data, fsyncs it, closes it and renames it to path; on a failure tmp is removed and
   OSError says which file and why, as os.open and os.rename would. data is one buffer, or
   a list or tuple of buffers written one after the other (writev): a spooled batch is
   written from its header and its columns' slices as they were packed, never joined into
   one body, which copied 2.4 MB while holding the lock. The same steps as
   safeboard/client/config.py's Python path, made in C so that the interpreter lock is let
   go once, not at each of the five system calls: each time a thread takes the lock back,
   a training loop running Python in another thread is stopped until this one is scheduled
   (issue 13, the SDK's spool while the server is away: docs/benchmarks.md).

   connects(address, timeout): whether anything accepts a connection at address, a
   (host, port) pair (each of the name's addresses tried in turn) or a Unix socket's path:
   0, or the errno of the last try (-1: the name does not resolve). Nothing is sent. The
   sender asks this while the server is away, before a delivery: an HTTP request that
   fails to connect runs about a millisecond of Python and takes the lock back after each
   of its system calls (the name lookup, the socket, the connect, the close).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

#ifndef SB_SOURCE_DIGEST
#define SB_SOURCE_DIGEST "unknown"
#endif

/* The buffers of data (one object, or a list or tuple of them), held until released. */
typedef struct {
    Py_buffer *views;
    struct iovec *iov;
    Py_ssize_t count;
} Parts;

static void
parts_release(Parts *parts)
{
    for (Py_ssize_t i = 0; i < parts->count; i++) {
        PyBuffer_Release(&parts->views[i]);
    }
    PyMem_Free(parts->views);
    PyMem_Free(parts->iov);
    parts->views = NULL;
    parts->iov = NULL;
    parts->count = 0;
}

static int
parts_get(PyObject *data, Parts *parts)
{
    int many = PyList_Check(data) || PyTuple_Check(data);
    PyObject *seq = NULL;
    Py_ssize_t wanted = 1;

    if (many) {
        seq = PySequence_Fast(data, "data");
        if (seq == NULL) {
            return -1;
        }
        wanted = PySequence_Fast_GET_SIZE(seq);
    }
    parts->count = 0;
    parts->views = PyMem_Calloc((size_t)(wanted ? wanted : 1), sizeof(Py_buffer));
    parts->iov = PyMem_Calloc((size_t)(wanted ? wanted : 1), sizeof(struct iovec));
    if (parts->views == NULL || parts->iov == NULL) {
        Py_XDECREF(seq);
        parts_release(parts);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < wanted; i++) {
        PyObject *item = many ? PySequence_Fast_GET_ITEM(seq, i) : data;
        if (PyObject_GetBuffer(item, &parts->views[i], PyBUF_C_CONTIGUOUS) < 0) {
            Py_XDECREF(seq);
            parts_release(parts);
            return -1;
        }
        parts->count = i + 1;
        parts->iov[i].iov_base = parts->views[i].buf;
        parts->iov[i].iov_len = (size_t)parts->views[i].len;
    }
    Py_XDECREF(seq);
    return 0;
}

/* Every byte of iov[0..count) written to fd (writev, IOV_MAX at a time, short writes
   resumed); 0, or the errno. Runs without the interpreter lock. */
static int
write_all(int fd, struct iovec *iov, Py_ssize_t count)
{
    Py_ssize_t at = 0;

    while (at < count && iov[at].iov_len == 0) {
        at++;
    }
    while (at < count) {
        int batch = (int)(count - at < IOV_MAX ? count - at : IOV_MAX);
        ssize_t written = writev(fd, iov + at, batch);
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        while (at < count && written >= 0) {
            if ((size_t)written < iov[at].iov_len) {
                iov[at].iov_base = (char *)iov[at].iov_base + written;
                iov[at].iov_len -= (size_t)written;
                break;
            }
            written -= (ssize_t)iov[at].iov_len;
            at++;
        }
        while (at < count && iov[at].iov_len == 0) {
            at++;
        }
    }
    return 0;
}

static PyObject *
write_atomic(PyObject *module, PyObject *args)
{
    PyObject *tmp_given, *path_given, *data, *tmp = NULL, *path = NULL;
    Parts parts;
    int mode, error = 0, on_path = 0;

    (void)module;
    if (!PyArg_ParseTuple(args, "OOOi", &tmp_given, &path_given, &data, &mode)) {
        return NULL;
    }
    if (!PyUnicode_FSConverter(tmp_given, &tmp)) {
        return NULL;
    }
    if (!PyUnicode_FSConverter(path_given, &path)) {
        Py_DECREF(tmp);
        return NULL;
    }
    if (parts_get(data, &parts) < 0) {
        Py_DECREF(tmp);
        Py_DECREF(path);
        return NULL;
    }
    const char *tmp_name = PyBytes_AS_STRING(tmp);
    const char *path_name = PyBytes_AS_STRING(path);

    Py_BEGIN_ALLOW_THREADS
    int fd = open(tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        error = errno;
    } else {
        error = write_all(fd, parts.iov, parts.count);
        if (!error && fsync(fd) != 0) {
            error = errno;
        }
        if (close(fd) != 0 && !error) {
            error = errno;
        }
        if (!error && rename(tmp_name, path_name) != 0) {
            error = errno;
            on_path = 1;
        }
        if (error) {
            unlink(tmp_name);
        }
    }
    Py_END_ALLOW_THREADS

    parts_release(&parts);
    Py_DECREF(tmp);
    Py_DECREF(path);
    if (error) {
        errno = error;
        /* As os.open and os.rename say it: the file, and for the rename its target. */
        return PyErr_SetFromErrnoWithFilenameObjects(PyExc_OSError, tmp_given,
                                                     on_path ? path_given : NULL);
    }
    Py_RETURN_NONE;
}

/* Connect fd to addr, waiting at most timeout_ms; 0, or the errno. fd is non-blocking. */
static int
connect_within(int fd, const struct sockaddr *addr, socklen_t length, int timeout_ms)
{
    if (connect(fd, addr, length) == 0) {
        return 0;
    }
    if (errno != EINPROGRESS && errno != EINTR) {
        return errno;
    }
    struct pollfd wait = {.fd = fd, .events = POLLOUT};
    int ready = poll(&wait, 1, timeout_ms);
    if (ready < 0) {
        return errno;
    }
    if (ready == 0) {
        return ETIMEDOUT;
    }
    int error = 0;
    socklen_t size = sizeof error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) != 0) {
        return errno;
    }
    return error;
}

/* Runs without the interpreter lock. */
static int
connects_tcp(const char *host, const char *service, int timeout_ms)
{
    struct addrinfo hints, *found = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, service, &hints, &found) != 0) {
        return -1;
    }
    int error = ECONNREFUSED;
    for (struct addrinfo *each = found; each != NULL; each = each->ai_next) {
        int fd = socket(each->ai_family, each->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        each->ai_protocol);
        if (fd < 0) {
            error = errno;
            continue;
        }
        error = connect_within(fd, each->ai_addr, each->ai_addrlen, timeout_ms);
        close(fd);
        if (error == 0) {
            break;
        }
    }
    freeaddrinfo(found);
    return error;
}

/* Runs without the interpreter lock. */
static int
connects_unix(const char *path, int timeout_ms)
{
    struct sockaddr_un addr;
    size_t length = strlen(path);
    if (length >= sizeof addr.sun_path) {
        return ENAMETOOLONG;
    }
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, length + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return errno;
    }
    int error = connect_within(fd, (struct sockaddr *)&addr, sizeof addr, timeout_ms);
    close(fd);
    return error;
}

static PyObject *
connects(PyObject *module, PyObject *args)
{
    PyObject *address, *path = NULL;
    double timeout;
    const char *host;
    int port, error;

    (void)module;
    if (!PyArg_ParseTuple(args, "Od", &address, &timeout)) {
        return NULL;
    }
    int timeout_ms = timeout <= 0 ? 0 : timeout >= 3600 ? 3600000 : (int)(timeout * 1000);
    if (PyTuple_Check(address)) {
        if (!PyArg_ParseTuple(address, "si", &host, &port)) {
            return NULL;
        }
        if (port < 0 || port > 65535) {
            PyErr_SetString(PyExc_ValueError, "port must be 0-65535");
            return NULL;
        }
        char service[8];
        snprintf(service, sizeof service, "%d", port);
        Py_BEGIN_ALLOW_THREADS
        error = connects_tcp(host, service, timeout_ms);
        Py_END_ALLOW_THREADS
        return PyLong_FromLong(error);
    }
    if (!PyUnicode_FSConverter(address, &path)) {
        return NULL;
    }
    const char *name = PyBytes_AS_STRING(path);
    Py_BEGIN_ALLOW_THREADS
    error = connects_unix(name, timeout_ms);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    return PyLong_FromLong(error);
}

static PyMethodDef methods[] = {
    {"write_atomic", write_atomic, METH_VARARGS,
     "write_atomic(tmp, path, data, mode): data (a buffer, or a list or tuple of them) "
     "written to a new file tmp (mode), synced, renamed to path, with the interpreter lock "
     "let go throughout."},
    {"connects", connects, METH_VARARGS,
     "connects(address, timeout): 0 when something accepts a connection at address (a "
     "(host, port) pair or a Unix socket's path) within timeout seconds, else the errno "
     "(-1: the name does not resolve); nothing is sent, the interpreter lock let go "
     "throughout."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_writes", "The SDK's system calls, each without the interpreter lock.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__writes(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(module, "source_digest", SB_SOURCE_DIGEST) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
