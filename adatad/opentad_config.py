"""Reading OpenTAD's Python config files without mmengine.

OpenTAD configs are mmengine-style Python files: top-level assignments of plain values (`dict(...)`, lists,
numbers, strings, a little arithmetic on variables defined earlier in the same file), plus a `_base_` entry naming
one or more files (relative to the config) whose values they extend. This module evaluates such files with `ast`
(no code is executed: only literals, names, arithmetic and a few pure built-ins such as `dict`, `list`, `range` are
understood) and merges them as mmengine does:

- bases are read first, in the listed order; the same top-level key in two bases of one file is an error;
- a dict value is merged key by key into the base's dict of the same name, recursively; any other value (lists
  included) replaces the base's value;
- `_delete_=True` inside a dict replaces the base's dict instead of merging into it;
- `{{_base_.name.sub}}` refers to a value of the merged bases.

One convenience beyond mmengine: a name a file uses but does not define is looked up among the top-level values
of its merged bases (mmengine would fail with `NameError`; no working OpenTAD config relies on that).

Pure Python: imports neither torch nor transformers.
"""

import ast
import copy
import math
import operator
import re
from pathlib import Path

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"

# Calls a config may make: pure constructors and reductions of the values it already has.
ALLOWED_CALLS = {
    "dict": dict,
    "list": list,
    "tuple": tuple,
    "range": range,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "len": len,
    "min": min,
    "max": max,
    "sum": sum,
    "abs": abs,
    "round": round,
}
BINARY_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
UNARY_OPERATORS = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
# Bounds on what arithmetic may build, checked before computing: without them `10 ** 10 ** 8`, `"a" * 10 ** 10`
# or `range(10 ** 12)` would hang the reader or exhaust memory. Real configs stay far below (the largest
# numbers are sample counts and epochs; the longest sequences are class lists).
MAX_INT_BITS = 1024  # as large as the largest float
MAX_SEQUENCE_LENGTH = 1_000_000


class OpenTADConfigError(ValueError):
    """A config file that cannot be read: the message names the file, the line and what to change."""


def load_opentad_config(path: str | Path) -> dict:
    """Read an OpenTAD config file and everything it inherits through `_base_`.

    Args:
        path: the config file, e.g. `configs/adatad/thumos/e2e_thumos_videomae_s_768x1_160_adapter.py`.

    Returns:
        The merged config as plain Python values (nested dicts, lists, tuples, numbers, strings, None), without
        `_base_` and `_delete_` entries; `range` values become lists.
    """
    return _to_plain(_load_file(Path(path).resolve(), included_by=()))


def merge_opentad_configs(child: dict, base: dict, where: str = "config") -> dict:
    """Merge `child` into a copy of `base` with mmengine's rules (dicts merge recursively unless they set
    `_delete_=True`; other values replace). `where` names the source in error messages."""
    merged = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and key in merged and not value.get(DELETE_KEY, False):
            if not isinstance(merged[key], dict):
                raise OpenTADConfigError(
                    f"{where}: `{key}` is a dict here but {type(merged[key]).__name__} ({merged[key]!r}) in a base "
                    f"config, so it cannot be merged; add `{DELETE_KEY}=True` to replace the base value."
                )
            merged[key] = merge_opentad_configs(value, merged[key], f"{where}, in `{key}`")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_file(path: Path, included_by: tuple[Path, ...]) -> dict:
    if path in included_by:
        chain = " -> ".join(str(p) for p in (*included_by, path))
        raise OpenTADConfigError(f"circular `_base_` inheritance: {chain}")
    if not path.is_file():
        origin = f" (named in `_base_` of {included_by[-1]})" if included_by else ""
        raise OpenTADConfigError(f"OpenTAD config file not found: {path}{origin}")
    if path.suffix != ".py":
        raise OpenTADConfigError(f"{path}: only Python (.py) OpenTAD configs are supported.")
    try:
        module = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as error:
        raise OpenTADConfigError(f"{path}:{error.lineno}: not valid Python: {error.msg}") from error

    # `_base_` is read before everything else: the file's own values extend the merged bases.
    base = {}
    base_sources = {}
    for base_file in _base_files(module, path):
        base_values = _load_file(base_file, (*included_by, path))
        for key in base_values:
            if key in base:
                raise OpenTADConfigError(
                    f"{path}: key `{key}` is defined in two of its base files ({base_sources[key]} and {base_file}); "
                    "mmengine does not allow that either. Define it in one base or in this file."
                )
            base_sources[key] = base_file
        base.update(base_values)

    own_values = _ConfigEvaluator(path, base).run(module)
    return _drop_delete_keys(merge_opentad_configs(own_values, base, str(path)))


def _base_files(module: ast.Module, path: Path) -> list[Path]:
    for statement in module.body:
        if isinstance(statement, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == BASE_KEY for target in statement.targets
        ):
            value = _ConfigEvaluator(path, {}).evaluate(statement.value)
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
                raise OpenTADConfigError(
                    f"{path}:{statement.lineno}: `_base_` must be a file name or a list of file names, got {value!r}."
                )
            return [(path.parent / name).resolve() for name in names]
    return []


class _ConfigEvaluator:
    """Evaluates the statements of one config file; names resolve to the file's earlier assignments, then to the
    top-level values of its merged bases."""

    def __init__(self, path: Path, base: dict):
        self.path = path
        self.base = base
        self.namespace = {}

    def fail(self, node: ast.AST, message: str):
        raise OpenTADConfigError(f"{self.path}:{getattr(node, 'lineno', '?')}: {message}")

    def run(self, module: ast.Module) -> dict:
        for statement in module.body:
            if isinstance(statement, ast.Assign):
                value = self.evaluate(statement.value)
                for target in statement.targets:
                    self.assign(target, value)
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                self.assign(statement.target, self.evaluate(statement.value))
            elif isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
                current = self.lookup(statement.target)
                self.assign(statement.target, self.binary(statement, current, self.evaluate(statement.value)))
            elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                continue  # a docstring or a bare literal
            elif isinstance(statement, (ast.Import, ast.ImportFrom)):
                self.fail(
                    statement,
                    "imports are not supported: this reader evaluates plain values only (mmengine's pure-Python "
                    "`read_base()` configs are not supported). Inline the imported values.",
                )
            else:
                self.fail(
                    statement,
                    f"unsupported statement `{ast.unparse(statement).splitlines()[0]}`: OpenTAD configs may only "
                    "assign values to names.",
                )
        return {name: value for name, value in self.namespace.items() if name != BASE_KEY and not name.startswith("__")}

    def assign(self, target: ast.AST, value):
        if isinstance(target, ast.Name):
            self.namespace[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = list(value)
            if len(values) != len(target.elts):
                self.fail(target, f"cannot unpack {len(values)} values into {len(target.elts)} names.")
            for element, element_value in zip(target.elts, values):
                self.assign(element, element_value)
        else:
            self.fail(target, f"cannot assign to `{ast.unparse(target)}`; assign to a plain name instead.")

    def lookup(self, node: ast.Name):
        if node.id in self.namespace:
            return self.namespace[node.id]
        if node.id in self.base:
            return self.base[node.id]
        self.fail(node, f"name `{node.id}` is not defined in this file or its base configs.")

    def evaluate(self, node: ast.AST):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.lookup(node)
        if isinstance(node, (ast.List, ast.Tuple)):
            values = []
            for element in node.elts:
                if isinstance(element, ast.Starred):
                    values.extend(self.evaluate(element.value))
                else:
                    values.append(self.evaluate(element))
            return values if isinstance(node, ast.List) else tuple(values)
        if isinstance(node, ast.Dict):
            result = {}
            for key, value in zip(node.keys, node.values):
                if key is None:  # `{**other}`
                    result.update(self.evaluate(value))
                else:
                    result[self.evaluate(key)] = self.evaluate(value)
            return result
        if isinstance(node, ast.Set):
            return self.base_reference(node)
        if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY_OPERATORS:
            return UNARY_OPERATORS[type(node.op)](self.evaluate(node.operand))
        if isinstance(node, ast.BinOp):
            return self.binary(node, self.evaluate(node.left), self.evaluate(node.right))
        if isinstance(node, ast.Subscript):
            container = self.evaluate(node.value)
            index = self.evaluate(node.slice)
            try:
                return container[index]
            except (IndexError, KeyError, TypeError) as error:
                self.fail(node, f"`{ast.unparse(node)}` failed: {error!r}.")
        if isinstance(node, ast.Slice):
            return slice(
                *(self.evaluate(part) if part is not None else None for part in (node.lower, node.upper, node.step))
            )
        if isinstance(node, ast.JoinedStr):
            return self.checked_size(node, "".join(self.evaluate(part) for part in node.values))
        if isinstance(node, ast.FormattedValue):
            value = self.evaluate(node.value)
            spec = self.evaluate(node.format_spec) if node.format_spec is not None else ""
            # A width or precision in the spec (`{x:999999999}`) sizes the result before any check could run.
            if any(len(digits) > 6 for digits in re.findall(r"\d+", spec)):
                self.fail(node, f"format spec {spec!r} asks for a field wider than config values may be.")
            conversion = {ord("r"): repr, ord("s"): str, ord("a"): ascii}.get(node.conversion)
            try:
                return format(conversion(value) if conversion else value, spec)
            except (TypeError, ValueError) as error:
                self.fail(node, f"`{ast.unparse(node)}` failed: {error}.")
        if isinstance(node, ast.Call):
            return self.call(node)
        self.fail(node, f"unsupported expression `{ast.unparse(node)}`: configs may use literals, names, arithmetic "
                  f"and the calls {sorted(ALLOWED_CALLS)}.")

    def binary(self, node: ast.AST, left, right):
        operation = BINARY_OPERATORS.get(type(node.op))
        if operation is None:
            self.fail(node, f"unsupported operator in `{ast.unparse(node)}`.")
        self.check_result_size(node, operation, left, right)
        try:
            result = operation(left, right)
        except OverflowError:
            self.fail(node, f"`{ast.unparse(node)}` is too large for a float.")
        except (TypeError, ZeroDivisionError, ValueError) as error:
            self.fail(node, f"`{ast.unparse(node)}` failed: {error}.")
        return self.checked_size(node, result)

    def check_result_size(self, node: ast.AST, operation, left, right):
        """Refuses, before computing it, an integer power or product, or a repeated sequence, that would
        exceed the bounds (the result of `**` and `*` can be far larger than their operands)."""
        if operation in (operator.pow, operator.mul) and _is_int(left) and _is_int(right):
            if operation is operator.pow:
                bits = math.ceil(right * math.log2(abs(left))) if right > 0 and abs(left) > 1 else 0
            else:
                bits = left.bit_length() + right.bit_length()
            if bits > MAX_INT_BITS:
                self.fail(node, f"`{ast.unparse(node)}` would be an integer of about {bits} bits; config values are "
                          f"limited to {MAX_INT_BITS} bits. Write the intended value as a literal.")
        if operation is operator.mul:
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, (str, list, tuple))
                    and _is_int(count)
                    and len(sequence) * count > MAX_SEQUENCE_LENGTH
                ):
                    self.fail(node, f"`{ast.unparse(node)}` would repeat a sequence to {len(sequence) * count} items; "
                              f"config values are limited to {MAX_SEQUENCE_LENGTH}.")

    def checked_size(self, node: ast.AST, value):
        """Refuses a value past the bounds (sums of long sequences, long `range`s and f-strings)."""
        if _is_int(value) and value.bit_length() > MAX_INT_BITS:
            self.fail(node, f"`{ast.unparse(node)}` gives an integer of {value.bit_length()} bits; config values are "
                      f"limited to {MAX_INT_BITS} bits.")
        if isinstance(value, (str, list, tuple, range)):
            # `len` of a range past sys.maxsize items raises OverflowError; its item count is plain arithmetic.
            size = len(value) if not isinstance(value, range) else max(0, -((value.start - value.stop) // value.step))
            if size > MAX_SEQUENCE_LENGTH:
                self.fail(node, f"`{ast.unparse(node)}` gives a value of {size} items; config values are limited "
                          f"to {MAX_SEQUENCE_LENGTH}.")
        return value

    def call(self, node: ast.Call):
        function_name = node.func.id if isinstance(node.func, ast.Name) else None
        if function_name not in ALLOWED_CALLS:
            self.fail(node, f"call of `{ast.unparse(node.func)}` is not allowed; allowed: {sorted(ALLOWED_CALLS)}.")
        args = []
        for argument in node.args:
            if isinstance(argument, ast.Starred):
                args.extend(self.evaluate(argument.value))
            else:
                args.append(self.evaluate(argument))
        kwargs = {}
        for keyword in node.keywords:
            if keyword.arg is None:  # `dict(**other, key=value)`
                kwargs.update(self.evaluate(keyword.value))
            else:
                kwargs[keyword.arg] = self.evaluate(keyword.value)
        try:
            result = ALLOWED_CALLS[function_name](*args, **kwargs)
        except (TypeError, ValueError, OverflowError) as error:
            self.fail(node, f"`{ast.unparse(node)}` failed: {error}.")
        return self.checked_size(node, result)

    def base_reference(self, node: ast.Set):
        """`{{_base_.a.b}}`: mmengine's reference to a value of the merged base configs."""
        inner = node.elts[0] if len(node.elts) == 1 else None
        reference = inner.elts[0] if isinstance(inner, ast.Set) and len(inner.elts) == 1 else None
        path = []
        while isinstance(reference, ast.Attribute):
            path.insert(0, reference.attr)
            reference = reference.value
        if not (isinstance(reference, ast.Name) and reference.id == BASE_KEY and path):
            self.fail(
                node, f"unsupported set expression `{ast.unparse(node)}` (only `{{{{_base_.name}}}}` is understood)."
            )
        value = self.base
        for depth, name in enumerate(path):
            if not isinstance(value, dict) or name not in value:
                self.fail(
                    node,
                    f"`{{{{_base_.{'.'.join(path)}}}}}`: the base configs have no `{'.'.join(path[: depth + 1])}`.",
                )
            value = value[name]
        return copy.deepcopy(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _drop_delete_keys(value):
    if isinstance(value, dict):
        return {key: _drop_delete_keys(item) for key, item in value.items() if key != DELETE_KEY}
    if isinstance(value, list):
        return [_drop_delete_keys(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_drop_delete_keys(item) for item in value)
    return value


def _to_plain(value):
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, range):
        return list(value)
    if isinstance(value, list):
        return [_to_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_to_plain(item) for item in value)
    return value


__all__ = ["OpenTADConfigError", "load_opentad_config", "merge_opentad_configs"]
