"""Notion connector benchmark: rate use, requests per page, incremental cost.

Against the sandbox (real HTTP, the official SDK, the project's HTTP layer), with the sample
company plus filler pages (about 1,000 in all) and page-level discussions:

1. a full sync with the sandbox enforcing `--rate` requests a second and the connector's budget
   set to the same rate: the share of the allowed rate it uses (anchor: >= 90 %), and failed pages
   (anchor: 0);
2. requests per page, beside the fewest the API allows for the same content (one listing request
   per 100 results, one children request per 100 blocks of every block that has children, one
   comments request per page, the user directory) (anchor: within 10 %);
3. one page in 1,000 edited, then an incremental sync: its requests as a share of the full
   sync's (anchor: <= 1 %).

Notion documents an average of 3 requests a second; at that rate the full sync takes about 12
minutes, so the default runs the sandbox and the budget at 30 (`--rate 3` for the real figure).
The ratios do not depend on the rate.

    .venv/bin/python benchmarks/bench_notion.py [--rate 30] [--pages 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.base import Document, Failure, Interaction, drive  # noqa: E402
from connectors.http import HttpBudget  # noqa: E402
from connectors.notion import NotionConnector  # noqa: E402
from connectors.sandbox.notion import TEAMSPACES, NotionSandbox, build_workspace  # noqa: E402
from tacit.config import SourceConfig  # noqa: E402

BURST = 3  # the budget's burst for Notion (NotionConnector.rate_limit)
#: Notion limits the *average* rate; the sandbox lets short bursts through, as Notion does, so the
#: jitter of loopback latencies alone does not turn a request sent on time into a 429.
SANDBOX_BURST = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=30.0, help="requests a second (Notion documents 3)")
    parser.add_argument("--pages", type=int, default=1000, help="pages in the workspace, about")
    args = parser.parse_args()

    base = len(build_workspace().listed_pages())
    workspace = build_workspace(extra_pages=max(0, args.pages - base))
    with NotionSandbox(workspace, rate_limit=args.rate, burst=SANDBOX_BURST) as sandbox:
        source = SourceConfig(name="bench", kind="notion", team="platform", token=sandbox.token,
                              base_url=sandbox.url, rate_limit=args.rate, teamspaces=TEAMSPACES)
        connector = NotionConnector(source, HttpBudget("notion-bench", rate=args.rate, burst=BURST))
        pages = len(workspace.listed_pages())
        minimum = sandbox.minimum_requests("pages")
        print(f"Notion connector benchmark: {pages} pages ({len(workspace.blocks)} blocks), "
              f"{len({c.discussion_id for c in workspace.comments})} discussions; sandbox and budget at "
              f"{args.rate:g} requests/s (Notion documents 3; scaled, the ratios are what count)")

        started = time.monotonic()
        items, checkpoint = drive(connector.sync(None))
        elapsed = time.monotonic() - started
        full = sandbox.request_count
        failures = [i for i in items if isinstance(i, Failure)]
        docs = sum(isinstance(i, Document) for i in items)
        threads = sum(isinstance(i, Interaction) for i in items)
        used = full / elapsed / args.rate
        print(f"full sync: {docs} documents, {threads} interactions, {len(failures)} failed pages (anchor: 0), "
              f"{sandbox.by_status[429]} answers 429")
        print(f"  rate: {full} requests in {elapsed:.1f} s = {full / elapsed:.2f} requests/s = {used:.1%} of the "
              f"allowed {args.rate:g}/s (anchor: >= 90%)")
        per_page, floor = full / pages, minimum["total"] / pages
        print(f"  requests per page: {per_page:.3f} vs {floor:.3f} the API allows at the least "
              f"({minimum['listing']} listing + {minimum['blocks']} block children + {minimum['comments']} comments "
              f"+ {minimum['users']} users = {minimum['total']}; one query per data source on top) "
              f"= {per_page / floor - 1:+.1%} (anchor: within +10%)")

        edited = sandbox.page_id("platform/Deploy policy")
        sandbox.edit_page(edited, "Deploys on public holidays need the on-call lead's approval.", notify=False)
        sandbox.reset_counts()
        items, checkpoint = drive(connector.sync(checkpoint))
        incremental = sandbox.request_count
        read = [i.external_id for i in items if isinstance(i, Document)]
        assert read == [edited], read
        print(f"incremental sync after editing 1 page of {pages}: {incremental} requests "
              f"(listing {sandbox.count('/v1/search') + sandbox.count('/v1/data_sources')}, the page "
              f"{sandbox.count('/v1/blocks') + sandbox.count('/v1/comments')}, users {sandbox.count('/v1/users')}) "
              f"= {incremental / full:.2%} of the full sync's {full} (anchor: <= 1%)")
        ok = not failures and used >= 0.9 and per_page / floor - 1 <= 0.10 and incremental / full <= 0.01
        print("all anchors met" if ok else "SOME ANCHORS MISSED")


if __name__ == "__main__":
    main()
