"""File → Markdown conversion and mail/chat body cleaning (quoted history), on real generated files."""

from __future__ import annotations

import pytest

from connectors.msgraph.convert import Unreadable, Unsupported, html_to_markdown, kind_of, to_markdown
from connectors.msgraph.mailtext import body_text, strip_quoted_html, strip_quoted_text
from connectors.sandbox.graph import files

SECTIONS = [("Refunds", ["Refunds up to 200 euros can be approved by any support agent.",
                         "Refunds above 200 euros need approval from Dana Whitfield."])]


@pytest.mark.parametrize(("ext", "expected"), [
    (".docx", "# Refunds\n\n## Refunds\n\nRefunds up to 200 euros can be approved by any support agent.\n\n"
              "Refunds above 200 euros need approval from Dana Whitfield.\n"),
    (".pptx", "## Slide 1: Refunds\n\n## Slide 2: Refunds\n\n"
              "- Refunds up to 200 euros can be approved by any support agent.\n\n"
              "- Refunds above 200 euros need approval from Dana Whitfield.\n\nNotes: Speaker notes: Refunds.\n"),
    (".xlsx", "## Refunds\n\n| Topic | Statement |\n| --- | --- |\n"
              "| Refunds | Refunds up to 200 euros can be approved by any support agent. |\n"
              "| Refunds | Refunds above 200 euros need approval from Dana Whitfield. |\n"),
    (".pdf", "Refunds\nRefunds\nRefunds up to 200 euros can be approved by any support agent.\n"
             "Refunds above 200 euros need approval from Dana Whitfield.\n"),
    (".html", "# Refunds\n\n## Refunds\n\n- Refunds up to 200 euros can be approved by any support agent.\n"
              "- Refunds above 200 euros need approval from Dana Whitfield.\n"),
    (".md", "# Refunds\n\n## Refunds\n\nRefunds up to 200 euros can be approved by any support agent.\n\n"
            "Refunds above 200 euros need approval from Dana Whitfield.\n"),
    (".txt", "Refunds\n=======\n\nRefunds\n\nRefunds up to 200 euros can be approved by any support agent.\n"
             "Refunds above 200 euros need approval from Dana Whitfield.\n"),
])
def test_each_format_becomes_markdown(ext: str, expected: str) -> None:
    assert to_markdown(f"refunds{ext}", None, files.file_bytes(ext, "Refunds", SECTIONS)) == expected


def test_bad_files_are_unreadable_and_other_types_unsupported() -> None:
    with pytest.raises(Unreadable, match="corrupt or truncated file"):
        to_markdown("budget.docx", None, files.corrupt_docx())
    with pytest.raises(Unreadable, match="encrypted"):
        to_markdown("salaries.pdf", None, files.encrypted_pdf("S", SECTIONS))
    with pytest.raises(Unreadable):
        to_markdown("sheet.xlsx", None, b"not a workbook")
    with pytest.raises(Unsupported, match=r"unsupported type \.png"):
        to_markdown("logo.png", "image/png", files.png_bytes())
    assert kind_of("README", "text/markdown") == "md" and kind_of("x.HTM") == "htm"
    assert to_markdown("latin.txt", None, "café".encode("cp1252")) == "café\n"
    assert to_markdown("bom.md", None, b"\xef\xbb\xbf# T\r\n") == "# T\n"


def test_html_tables_links_and_scripts() -> None:
    html = ("<html><head><style>p{}</style></head><body><script>x()</script><h2>Quota</h2>"
            "<table><tr><th>Plan</th><th>vCPU</th></tr><tr><td>default</td><td>8</td></tr></table>"
            "<p>See <a href='https://atlas'>the Atlas catalog</a>.</p></body></html>")
    assert html_to_markdown(html) == ("## Quota\n\n| Plan | vCPU |\n| --- | --- |\n| default | 8 |\n\n"
                                      "See [the Atlas catalog](https://atlas).\n")


OUTLOOK = ('<html><body><div>Hi Dana,</div><div>Backups are kept for 35 days.</div>'
           '<hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg" dir="ltr"><b>From:</b> Dana'
           '<br><b>Sent:</b> Monday</div><div>How long are backups kept?</div></body></html>')
GMAIL = ('<div dir="ltr">Thanks!</div><br><div class="gmail_quote"><div class="gmail_attr">On Mon, Ada wrote:'
         '</div><blockquote class="gmail_quote">Backups are kept for 35 days.</blockquote></div>')
DESKTOP = ('<div class="WordSection1"><p>Use the Kestrel queue.</p><div style="border:none;border-top:solid #E1E1E1 '
           '1.0pt;padding:3.0pt 0in 0in 0in"><p><b>From:</b> Emeka<br><b>Sent:</b> Tuesday</p></div>'
           '<p>Which queue?</p></div>')
APPEND = '<div>Yes, RESET-7.</div><div id="appendonsend"></div><div>Which macro?</div>'


@pytest.mark.parametrize(("html", "text"), [
    (OUTLOOK, "Hi Dana,\n\nBackups are kept for 35 days."),
    (GMAIL, "Thanks!"),
    (DESKTOP, "Use the Kestrel queue."),
    (APPEND, "Yes, RESET-7."),
    ("<p>No quote at all.</p>", "No quote at all."),
])
def test_quoted_history_is_removed_from_html(html: str, text: str) -> None:
    assert strip_quoted_html(html) == text


def test_quoted_history_is_removed_from_plain_text() -> None:
    assert strip_quoted_text("Sure.\n\nOn Mon, 3 Mar 2025, Ada wrote:\n> old\n") == "Sure."
    assert strip_quoted_text("Done.\n-----Original Message-----\nFrom: x\n") == "Done."
    assert strip_quoted_text("Done.\nFrom: Ada\nSent: Monday\nSubject: x\nold") == "Done."
    assert strip_quoted_text("Keep this\n> but not this\nand this") == "Keep this\nand this"
    # a body marked text that still holds markup (Teams sends both) is read as HTML
    assert body_text("Plain <b>text</b> with tags", "text") == "Plain text with tags"
    assert body_text("", "html") == "" and body_text(None, None) == ""
