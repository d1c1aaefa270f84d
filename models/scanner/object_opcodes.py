"""Opcodes that change an object already on the stack: BUILD (`__setstate__`), APPEND(S),
SETITEM(S) and ADDITEMS. In the real unpickler each of these may call a method of the object
(`__setstate__`, `extend`, `__setitem__`, `add`); here plain data is changed for real, modelled
objects go through `calls.build`, and anything else is reported, since calling its method
would run code the scanner cannot see.
"""

from __future__ import annotations

from models.scanner import calls, policy
from models.scanner.cparse import PickleSyntaxError
from models.scanner.values import (
    EmuCounter, EmuOrderedDict, GlobalRef, Inert, Opaque, TensorValue, describe,
)


class ObjectOpcodes:
    """Mixin for Machine: needs the stack helpers of DataOpcodes and Machine.flag."""

    def op_build(self):
        if len(self.stack) - 2 < self.fence:
            raise self.underflow()
        state = self.pop()
        inst = self.top()
        if isinstance(inst, (Inert, EmuOrderedDict, EmuCounter)):
            if isinstance(inst, (Opaque, GlobalRef)) and not (
                    isinstance(inst, GlobalRef) and inst.category == policy.ALLOWED_CATEGORY):
                self.flag("unexpected-build", f"BUILD calls __setstate__ of {describe(inst)}")
                return
            try:
                calls.build(self, inst, state)
            except calls.Unmodelled as exc:
                self.flag("unexpected-build", str(exc))
            return
        # Plain data has no __setstate__ and no __dict__: any state but None fails, and slot
        # state can only be empty.
        slotstate = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slotstate = state
        if state is not None:
            raise PickleSyntaxError(f"BUILD: {describe(inst)} has no __dict__")
        if slotstate is not None and (not isinstance(slotstate, dict) or slotstate):
            raise PickleSyntaxError(f"BUILD: cannot set attributes on {describe(inst)}")

    def _container_target(self, x: int, opname: str):
        if x > len(self.stack) or x <= self.fence:
            raise self.underflow()
        return self.stack[x - 1]

    def _append_from(self, x: int, opname: str):
        target = self._container_target(x, opname)
        if len(self.stack) == x:
            return
        items = self.stack[x:]
        del self.stack[x:]
        if type(target) is list:
            target.extend(items)
        elif type(target) is bytearray:
            target.extend(items)
        elif isinstance(target, (Opaque, GlobalRef)):
            self.flag("unexpected-call", f"{opname} calls extend/append of {describe(target)}")
        else:
            raise PickleSyntaxError(f"{opname}: {describe(target)} has no extend or append")

    def op_append(self):
        if len(self.stack) - 1 <= self.fence:
            raise self.underflow()
        self._append_from(len(self.stack) - 1, "APPEND")

    def op_appends(self):
        self._append_from(self.marker(), "APPENDS")

    def _setitems_from(self, x: int, opname: str):
        target = self._container_target(x, opname)
        n = len(self.stack)
        if n == x:
            return
        if (n - x) % 2:
            raise PickleSyntaxError(f"odd number of items for {opname}")
        items = self.stack[x:]
        del self.stack[x:]
        if isinstance(target, (dict, list, bytearray)):
            for i in range(0, len(items), 2):
                target[items[i]] = items[i + 1]
        elif isinstance(target, (Opaque, GlobalRef, TensorValue)):
            self.flag("unexpected-call", f"{opname} assigns items into {describe(target)}")
        else:
            raise PickleSyntaxError(f"{opname}: {describe(target)} does not support item "
                                    "assignment")

    def op_setitem(self):
        self._setitems_from(len(self.stack) - 2, "SETITEM")

    def op_setitems(self):
        self._setitems_from(self.marker(), "SETITEMS")

    def op_additems(self):
        x = self.marker()
        target = self._container_target(x, "ADDITEMS")
        if len(self.stack) == x:
            return
        items = self.pop_tuple(x)
        if isinstance(target, set):
            target.update(items)
        elif isinstance(target, (Opaque, GlobalRef)):
            self.flag("unexpected-call", f"ADDITEMS calls add() of {describe(target)}")
        else:
            raise PickleSyntaxError(f"ADDITEMS: {describe(target)} has no add method")
