"""Calling functions from a template: builtins and the caller's own, with Go's argument and arity rules. No I/O here.

A builtin's parameters have Go kinds (any value, or a string for printf's
format); the caller's Python functions take any values, and their arity is
read from their signature when it can be. A function that fails is
``error calling NAME: MESSAGE``, located at the command, as in Go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .builtins import BUILTINS, STRING, VALUE, arity, call_python
from .errors import CallError
from .executing import NOFINAL, RAW, State, want_string
from .nodes import IdentifierNode, Node
from .values import NIL_IFACE, is_true

if TYPE_CHECKING:
    from .pipelines import Closure, PipelineCompiler as Compiler


def _arity_error(name: str, fixed: int, variadic: bool, given: int, num_in: int, most: int | None = None) -> str | None:
    """Go's complaint about the number of arguments, or None when it is right."""
    if variadic:
        if num_in < fixed:
            return f"wrong number of args for {name}: want at least {fixed} got {given}"
        if most is not None and num_in > most:
            return f"wrong number of args for {name}: want at most {most} got {num_in}"
        return None
    if num_in != fixed:
        return f"wrong number of args for {name}: want {fixed} got {num_in}"
    return None


def _and_or(compiler: Compiler, ident: IdentifierNode, arg_nodes: list[Node]) -> Closure:
    name = ident.ident
    want = name == "or"
    args = [compiler.arg(a, VALUE) for a in arg_nodes]
    given = len(args)

    def and_or(st: State, dot: Any, final: Any) -> Any:
        st.node = ident
        if given == 0 and final is NOFINAL:
            raise st.fail(f"wrong number of args for {name}: want at least 1 got 0")
        v = None
        for arg in args:
            v = arg(st, dot)
            if is_true(v) == want:
                return v
        return v if final is NOFINAL else final

    return and_or


def compile_call(compiler: Compiler, ident: IdentifierNode, cmd: Node, arg_nodes: list[Node]) -> Closure:
    """Go's evalFunction and evalCall for the function named by ``ident``."""
    name = ident.ident
    if name in BUILTINS and name not in compiler.program.functions:
        impl, fixed, variadic = BUILTINS[name]
        if impl is None:
            return _and_or(compiler, ident, arg_nodes)
        if name == "len":
            fixed = (RAW,)
        most = None
    else:
        fn = compiler.program.functions[name]
        shape = arity(fn)
        if shape is None:
            fixed, variadic, most = (), VALUE, None
        else:
            required, total, star = shape
            fixed = (VALUE,) * required
            variadic = VALUE if star or total > required else None
            most = None if star else total

        def impl(st: State, *argv: Any, _fn: Any = fn) -> Any:
            result = call_python(_fn, list(argv))
            if type(result) is str:
                st.charge(len(result))
                if len(result) > st.max_out:
                    raise CallError(f"result longer than {st.max_out} bytes (limit max_output_bytes)")
            return result

    n_fixed = len(fixed)
    kinds = [fixed[i] if i < n_fixed else variadic for i in range(len(arg_nodes))]
    args = [compiler.arg(a, k or VALUE) for a, k in zip(arg_nodes, kinds, strict=True)]
    given = len(args)
    final_kind = None
    if variadic is None:
        final_kind = fixed[-1] if fixed else VALUE
    is_variadic = variadic is not None

    def call(st: State, dot: Any, final: Any) -> Any:
        st.node = ident
        num_in = given + (final is not NOFINAL)
        if num_in != n_fixed:
            problem = _arity_error(name, n_fixed, is_variadic, given, num_in, most)
            if problem is not None:
                raise st.fail(problem)
        argv = [arg(st, dot) for arg in args]
        if final is not NOFINAL:
            kind = final_kind if final_kind is not None else (fixed[num_in - 1] if num_in - 1 < n_fixed else variadic)
            if kind == STRING:
                final = want_string(st, final)
            elif final is NIL_IFACE:
                final = None
            argv.append(final)
        try:
            return impl(st, *argv)
        except CallError as exc:
            st.node = cmd
            raise st.fail(f"error calling {name}: {exc}") from None

    return call
