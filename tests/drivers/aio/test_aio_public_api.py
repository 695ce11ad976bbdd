"""The anyio driver's public surface is checked, trio-style: exported, documented, typed."""

from __future__ import annotations

import inspect

import anyio.abc

import horizon_drivers.aio as aio


def test_every_export_is_documented_and_annotated() -> None:
    assert len(set(aio.__all__)) == len(aio.__all__)
    problems = []
    for name in aio.__all__:
        obj = getattr(aio, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not (inspect.getdoc(obj) or "").strip():
                problems.append(f"{name}: no docstring")
            members = vars(obj).items() if inspect.isclass(obj) else [(name, obj)]
            for member_name, member in members:
                if not inspect.isfunction(member) or (
                    member_name.startswith("_") and member_name != "__init__"
                ):
                    continue
                signature = inspect.signature(member)
                if signature.return_annotation is inspect.Signature.empty:
                    problems.append(f"{name}.{member_name}: no return annotation")
                problems.extend(
                    f"{name}.{member_name}({parameter.name}): not annotated"
                    for parameter in signature.parameters.values()
                    if parameter.name != "self" and parameter.annotation is parameter.empty
                )
                if not member_name.startswith("_") and not inspect.getdoc(member):
                    problems.append(f"{name}.{member_name}: no docstring")
    assert problems == []


def test_returned_classes_are_anyio_abcs() -> None:
    assert issubclass(aio.HorizonUDPSocket, anyio.abc.UDPSocket)
    assert issubclass(aio.HorizonConnectedUDPSocket, anyio.abc.ConnectedUDPSocket)
    assert issubclass(aio.HorizonSocketStream, anyio.abc.SocketStream)
    assert issubclass(aio.HorizonSocketListener, anyio.abc.SocketListener)
    for cls in (
        aio.HorizonUDPSocket,
        aio.HorizonConnectedUDPSocket,
        aio.HorizonSocketStream,
        aio.HorizonSocketListener,
    ):
        assert not inspect.isabstract(cls), cls
