"""Convert the Markdown of CHANGELOG.md to reStructuredText.

Handles what a Keep a Changelog file uses: ATX headings, paragraphs, bullet and
numbered lists (nested by indentation), fenced code blocks, inline code, links,
bold and italics, and link reference definitions (``[1.0.0]: https://...``).
Anything else is kept as escaped text, so the result never holds stray
reStructuredText markup.
"""

import re

_HEADING_CHARS = {1: "=", 2: "-", 3: "~", 4: "^", 5: '"', 6: "'"}
_REF_DEF = re.compile(r"^\s{0,3}\[([^\]]+)\]:\s*(\S+)\s*$")
_FENCE = re.compile(r"^(\s*)(```|~~~)\s*([\w+-]*)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$")

# Inline Markdown, in order of precedence.
_INLINE = re.compile(
    r"(?P<code>(?P<ticks>`+)(?P<code_text>.+?)(?P=ticks))"
    r"|(?P<link>\[(?P<link_text>[^\]]+)\]\((?P<url>[^)\s]+)\))"
    r"|(?P<ref>\[(?P<ref_text>[^\]]+)\](?:\[(?P<ref_key>[^\]]*)\])?)"
    r"|(?P<strong>\*\*(?P<strong_text>[^*]+?)\*\*|__(?P<strong_text2>[^_]+?)__)"
    r"|(?P<em>(?<!\w)\*(?P<em_text>[^*\s][^*]*?)\*(?!\w)|(?<!\w)_(?P<em_text2>[^_\s][^_]*?)_(?!\w))"
)

# Characters allowed right before an inline markup start and right after its end.
_BEFORE = set(" \t\n'\"([{<-/:‘“’«¡¿")
_AFTER = set(" \t\n'\")]}>-/:.,;!?\\’”»")


def _escape(text):
    """Escape reStructuredText markup characters in plain text."""
    text = text.replace("\\", "\\\\")
    text = re.sub(r"([*`|])", r"\\\1", text)
    # A word followed by "_" or "__" would be read as a reference.
    text = re.sub(r"(?<=\w)(_+)(?=\W|$)", lambda m: "\\" + m.group(1), text)
    return text


def _inline(text, refs):
    """Turn one line (or paragraph) of inline Markdown into reStructuredText."""
    out = []
    pos = 0
    for match in _INLINE.finditer(text):
        out.append(_escape(text[pos : match.start()]))
        if match.group("code"):
            body = match.group("code_text").strip()
            rst = f"``{body}``" if "``" not in body else f":literal:`{body}`"
        elif match.group("link"):
            label = _escape(_strip_md(match.group("link_text")))
            rst = f"`{label} <{match.group('url')}>`__"
        elif match.group("ref"):
            label = match.group("ref_text")
            key = (match.group("ref_key") or label).lower()
            if key in refs:
                rst = f"`{_escape(_strip_md(label))} <{refs[key]}>`__"
            else:
                rst = _escape(match.group(0))
        elif match.group("strong"):
            body = match.group("strong_text") or match.group("strong_text2")
            rst = f"**{_escape(body.strip())}**"
        else:
            body = match.group("em_text") or match.group("em_text2")
            rst = f"*{_escape(body.strip())}*"
        # Inline markup must be separated from surrounding words; an escaped
        # space separates without showing.
        previous = "".join(out)[-1:] or " "
        if previous not in _BEFORE and not rst.startswith("\\"):
            out.append("\\ ")
        out.append(rst)
        following = text[match.end() : match.end() + 1] or " "
        if following not in _AFTER:
            out.append("\\ ")
        pos = match.end()
    out.append(_escape(text[pos:]))
    return "".join(out)


def _strip_md(text):
    return re.sub(r"[`*]", "", text)


def markdown_to_rst(markdown):
    """Return the reStructuredText for the Markdown text ``markdown``."""
    lines = markdown.replace("\t", "    ").splitlines()
    refs = {}
    body = []
    for line in lines:
        match = _REF_DEF.match(line)
        if match:
            refs[match.group(1).lower()] = match.group(2)
        else:
            body.append(line)

    out = []
    # Stack of (markdown indent of the item marker, rst indent of its content).
    items = []
    fence = None
    previous_blank = True

    def blank():
        if out and out[-1] != "":
            out.append("")

    for line in body:
        if fence is not None:
            indent, marker = fence
            if line.strip() == marker:
                fence = None
                out.append("")
            else:
                out.append(" " * (indent + 3) + line)
            continue
        if not line.strip():
            blank()
            previous_blank = True
            continue
        stripped_indent = len(line) - len(line.lstrip())

        # Leave list items whose content this line is not indented under.
        item_match = _ITEM.match(line)
        if stripped_indent == 0 and _HEADING.match(line):
            items.clear()
        while items and (
            stripped_indent < items[-1][0] + 1
            if item_match
            else (previous_blank and stripped_indent <= items[-1][0])
        ):
            items.pop()
        rst_indent = items[-1][1] if items else 0

        match = _FENCE.match(line)
        if match:
            blank()
            language = match.group(3) or "text"
            out.append(" " * rst_indent + f".. code-block:: {language}")
            out.append("")
            fence = (rst_indent, match.group(2))
            previous_blank = False
            continue

        match = _HEADING.match(line)
        if match and not items:
            level = len(match.group(1))
            title = _inline(match.group(2), refs)
            underline = _HEADING_CHARS[level] * max(len(title), 3)
            blank()
            if level == 1:
                out.append(underline)
            out += [title, underline, ""]
            previous_blank = True
            continue

        if item_match:
            marker = item_match.group(2)
            rst_marker = "-" if marker in "-*+" else "#."
            # A blank line before every item: a (nested) list must start after
            # one, and between items of one list it changes nothing.
            blank()
            items.append((stripped_indent, rst_indent + len(rst_marker) + 1))
            out.append(
                " " * rst_indent + f"{rst_marker} " + _inline(item_match.group(3), refs)
            )
            previous_blank = False
            continue

        # A paragraph line, or the continuation of a list item.
        if items and not previous_blank:
            rst_indent = items[-1][1]
        out.append(" " * rst_indent + _inline(line.strip(), refs))
        previous_blank = False

    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"
