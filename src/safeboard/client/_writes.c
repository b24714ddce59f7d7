/* A private file written whole, in one call that never holds the interpreter lock.

   write_atomic(tmp, path, data, mode): creates tmp (O_EXCL, with mode), writes all of
   data, fsyncs it, closes it and renames it to path; on a failure tmp is removed and
   OSError says which file and why, as os.open and os.rename would. The same steps as safeboard/client/config.py's
   Python path, made in C so that the interpreter lock is let go once, not at each of the
   five system calls: each time a thread takes the lock back, a training loop running
   Python in another thread is stopped until this one is scheduled (issue 13, the SDK's
   spool while the server is away: docs/benchmarks.md).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#ifndef SB_SOURCE_DIGEST
#define SB_SOURCE_DIGEST "unknown"
#endif

static PyObject *
write_atomic(PyObject *module, PyObject *args)
{
    PyObject *tmp_given, *path_given, *tmp = NULL, *path = NULL;
    Py_buffer data;
    int mode, error = 0, on_path = 0;

    (void)module;
    if (!PyArg_ParseTuple(args, "OOy*i", &tmp_given, &path_given, &data, &mode)) {
        return NULL;
    }
    if (!PyUnicode_FSConverter(tmp_given, &tmp) || !PyUnicode_FSConverter(path_given, &path)) {
        Py_XDECREF(tmp);
        PyBuffer_Release(&data);
        return NULL;
    }
    const char *tmp_name = PyBytes_AS_STRING(tmp);
    const char *path_name = PyBytes_AS_STRING(path);
    const char *at = data.buf;
    Py_ssize_t left = data.len;

    Py_BEGIN_ALLOW_THREADS
    int fd = open(tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        error = errno;
    } else {
        while (left > 0) {
            ssize_t written = write(fd, at, (size_t)left);
            if (written < 0) {
                if (errno == EINTR) {
                    continue;
                }
                error = errno;
                break;
            }
            at += written;
            left -= written;
        }
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

    PyBuffer_Release(&data);
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

static PyMethodDef methods[] = {
    {"write_atomic", write_atomic, METH_VARARGS,
     "write_atomic(tmp, path, data, mode): data written to a new file tmp (mode), synced, "
     "renamed to path, with the interpreter lock let go throughout."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_writes", "Whole-file writes without the interpreter lock.", -1,
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
