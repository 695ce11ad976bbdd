# Reading the __slots__ fields of the core's pure-Python classes (Batch, BufferPool) from C.
#
# A slot is a member descriptor that holds a fixed offset into the instance. getattr finds the
# descriptor through the type's method cache, then reads the pointer at that offset: about a
# hundred instructions per read. One recv_batch plus one send_batch read some twenty such
# fields, about an eighth of the user-space instructions of a spinning echo round trip, so the
# compiled batch paths read the pointer directly.
#
# Only for an instance whose type is exactly the class the offset was taken from (its layout
# is then known); a subclass, a field that is not a plain object slot, or an unset field goes
# through getattr, which gives the same value or raises the same AttributeError.

from cpython.object cimport PyObject, PyTypeObject


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    PyTypeObject PyMemberDescr_Type
    PyTypeObject *Py_TYPE(object)


cdef extern from "structmember.h":
    enum: T_OBJECT_EX


cdef inline Py_ssize_t slot_offset(type cls, str name) except -2:
    """Where ``cls`` keeps slot ``name`` in its instances; -1 when it is no plain object slot."""
    descr = cls.__dict__.get(name)
    if descr is None or Py_TYPE(descr) is not &PyMemberDescr_Type:
        return -1
    cdef PyMemberDef *member = (<PyMemberDescrObject *>descr).d_member
    if member.type != T_OBJECT_EX or member.offset <= 0:
        return -1
    return member.offset


cdef inline PyObject *slot_ptr(object obj, Py_ssize_t offset) noexcept:
    """The slot at ``offset`` of ``obj`` (borrowed; NULL when unset). The caller has checked
    that ``offset`` > 0 and that ``obj`` is exactly the class it was taken from."""
    return (<PyObject **>((<char *><PyObject *>obj) + offset))[0]


cdef inline object slot_get(object obj, type cls, Py_ssize_t offset, str name):
    """``obj.<name>``, read at ``offset`` when ``obj`` is exactly a ``cls`` and the slot is set."""
    cdef PyObject *value
    if offset > 0 and Py_TYPE(obj) is <PyTypeObject *>cls:
        value = slot_ptr(obj, offset)
        if value is not NULL:
            return <object>value
    return getattr(obj, name)
