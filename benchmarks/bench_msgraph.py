"""Microsoft Graph connector benchmark: a throttled full sync, requests per item, `$batch`, incremental cost.

Against the fake Graph (real HTTP, msgraph-sdk with the project's HTTP layer, client credentials
from the sandbox's token authority), a SharePoint site with `--items` files (Markdown, text and
every tenth a real .docx), written through the runner into a SQLite corpus:

1. a full sync with throttling on: the sandbox answers every `--every`-th request (`$batch`
   inner requests too) with 429, 503 or 504 and `Retry-After`, and enforces a per-tenant rate
   above the connector's proactive budget; failures (anchor: 0) and records written (anchor: items);
2. requests per item, beside the fewest the API allows (per file: the `/content` request, its
   302 to the download URL and the download; plus one delta page per 200 items, one `$batch` per
   20 permission look-ups and the drive resolution);
3. `$batch`: round trips for the permission look-ups, batched against one by one (both measured
   here, without throttling), and the time each took;
4. one file in `--items` edited, then an incremental sync: its requests as a share of the full
   sync's (anchor: <= 1 %);
5. Teams: a channel of `--threads` threads (a root and two replies each) against a sandbox whose
   channel delta carries no replies, as Graph's does: requests of a full sync and of an incremental
   sync after one new reply to an old thread, each beside the fewest the documented API allows
   (anchor: ratio 1.0; replies read with list replies, twenty threads per `$batch`).

    .venv/bin/python benchmarks/bench_msgraph.py [--items 1000] [--every 10] [--threads 400]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.sandbox.graph import GraphSandbox, files  # noqa: E402
from connectors.sandbox.graph.state import Identity  # noqa: E402
from connectors.sandbox.graph.workspace import HOST, add_bulk_files  # noqa: E402

PAGE = 200  # Graph's drive delta pages hold up to 200 items by default
SANDBOX_RATE = 400.0  # the sandbox's per-tenant limit (requests a second)
BUDGET_RATE = 300.0  # the connector's proactive budget, below it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--every", type=int, default=10, help="throttle every n-th request")
    parser.add_argument("--threads", type=int, default=400, help="Teams threads in the channel of part 5")
    args = parser.parse_args()

    import os

    os.environ.setdefault("TACIT_SECRET_KEY", "ZmRlYWRiZWVmZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWU=")
    from ingestion.corpus.runner import run_sync
    from tacit.context import Context

    with GraphSandbox(page_size=PAGE) as sb, tempfile.TemporaryDirectory() as tmp:
        site = sb.state.add_site(HOST, "/sites/bench", "Benchmark")
        drive = sb.state.add_drive("Documents", site=site)
        t0 = time.monotonic()
        item_ids = add_bulk_files(sb, drive.id, args.items)
        print(f"Microsoft Graph connector benchmark: {args.items} files in one SharePoint library "
              f"(built in {time.monotonic() - t0:.1f}s); every {args.every}th request throttled "
              f"(429/503/504), sandbox limit {SANDBOX_RATE:g}/s, connector budget {BUDGET_RATE:g}/s")
        config = Path(tmp) / "tacit.toml"
        config.write_text(
            f'[storage]\ndatabase_url = "sqlite:///{tmp}/tacit.db"\ndata_dir = "{tmp}/.tacit"\n'
            '[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n'
            f'[[sources]]\nname = "bench"\nkind = "msgraph"\nteam = "platform"\ntenant_id = "{sb.tenant_id}"\n'
            f'client_id = "{sb.client_id}"\nclient_secret = "{sb.client_secret}"\nauthority = "{sb.authority}"\n'
            f'ca_bundle = "{sb.ca_file}"\nbase_url = "{sb.url}"\nsites = ["{HOST}:/sites/bench"]\n'
            f'rate_limit = {BUDGET_RATE}\n', encoding="utf-8")
        ctx = Context.load(config)

        # 1. full sync, throttled
        sb.throttle_every(args.every, retry_after=0.02)
        sb.rate_limit(SANDBOX_RATE, burst=50)
        t0 = time.monotonic()
        full, full_served = counted_sync(sb, run_sync, ctx, "bench")
        full_s = time.monotonic() - t0
        stats = full.stats
        print("\n1. full sync with throttling on")
        print(f"   failures: {full.failures}   (anchor: 0)")
        print(f"   documents written: {full.documents_written}   (anchor: {args.items} files)")
        print(f"   throttled answers: {sb.counts['throttled']} of {sb.counts['api'] + sb.counts['inner']} "
              f"API requests ({sb.counts['inner_faults']} of them inner $batch requests; "
              f"{sb.counts['rate_limited']} from the per-tenant limit); retried by the client: {stats['retries']}")
        print(f"   time: {full_s:.1f}s, {args.items / full_s:.0f} files/s")

        # 2. requests per item
        batches = stats["batches"]
        pages = -(-args.items // PAGE)
        # per file: /content (answered 302) and the download; one delta page per 200; one $batch per 20
        # permission look-ups; the site and its drives
        minimum = 2 * args.items + pages + -(-args.items // 20) + 2
        ok_served = full_served - sb.counts["faults"]
        print("\n2. requests per item")
        print(f"   HTTP requests served: {full_served} ({full_served / args.items:.3f} per item), of which "
              f"{sb.counts['faults']} throttled; answered successfully: {ok_served} "
              f"({ok_served / args.items:.3f} per item)")
        print(f"   fewest the API allows: {minimum} ({minimum / args.items:.3f} per item): "
              f"ratio {ok_served / minimum:.3f}   (anchor: 1.0)")

        # 3. $batch against one by one (throttling off, same session code the sync uses)
        sb.throttle_every(None)
        sb.rate_limit(None)
        one_by_one, batched = measure_batch(ctx, drive.id, item_ids)
        print("\n3. permission look-ups: $batch against one by one")
        print(f"   in the sync: {stats['batched_requests']} look-ups in {batches} $batch round trips "
              f"(inner retries included): {stats['batched_requests'] - batches} round trips saved")
        print(f"   measured: one by one {one_by_one[0]} round trips in {one_by_one[1]:.2f}s; batched "
              f"{batched[0]} round trips in {batched[1]:.2f}s: {one_by_one[0] - batched[0]} saved, "
              f"{one_by_one[0] / batched[0]:.1f}x fewer, {one_by_one[1] / batched[1]:.1f}x faster")

        # 4. one change in N, incremental sync
        changed = item_ids[len(item_ids) // 2 + 1]  # an odd index: a Markdown file
        sb.state.edit_file(changed, files.md_bytes("Changed", [("Note", ["The freeze moved to Friday."])]))
        inc, inc_served = counted_sync(sb, run_sync, ctx, "bench")
        print(f"\n4. one file in {args.items} edited, incremental sync")
        print(f"   documents written: {inc.documents_written} (anchor: 1); requests: {inc_served} "
              f"(site, its drives, one delta page, one permissions $batch, /content, the download)")
        print(f"   share of the full sync's requests: {inc_served / full_served:.2%}   (anchor: <= 1%)")

        teams_section(sb, config, args.threads, run_sync, Context.load)


def counted_sync(sb: GraphSandbox, run_sync: Any, ctx: Any, source: str) -> tuple[Any, int]:
    """One sync of `source`, which must succeed: its summary and the HTTP requests the sandbox served it."""
    before = sb.requests_served()
    summary = run_sync(ctx, source)
    assert summary.status == "succeeded", summary.error
    return summary, sb.requests_served() - before


def teams_section(sb: GraphSandbox, config: Path, threads: int, run_sync: Any, load: Any) -> None:
    """Part 5: Teams threads with replies read per root, full and incremental, against the minimum."""
    st = sb.state
    team = st.add_team("Bench team", "Benchmark team", "bench-team@lumenlabs.example")
    channel = st.add_channel(team.id, "General")
    asker, answerer = Identity("Ivan Petrov", "ivan@lumenlabs.example"), Identity("Dana Whitfield",
                                                                                  "dana@lumenlabs.example")
    roots = []
    for n in range(threads):
        root = st.post_message(team.id, channel.id, f"<p>Question {n}: where is runbook {n}?</p>", author=asker)
        for k in range(2):
            st.post_message(team.id, channel.id, f"<p>Answer {k} to {n}: see page {n * 2 + k}.</p>",
                            author=answerer, reply_to=root.id)
        roots.append(root)
    with config.open("a", encoding="utf-8") as out:
        out.write(f'[[sources]]\nname = "bench-teams"\nkind = "msgraph"\nteam = "platform"\n'
                  f'access_token = "{sb.static_token}"\nbase_url = "{sb.url}"\nteams = ["{team.id}"]\n'
                  'rate_limit = 10000\n')
    tctx = load(config)
    # the team has no files drive (one 404), the team, its channels; then one delta page per 50 roots
    # (`$top` at most 50) and one `$batch` of list-replies requests per 20 roots
    fixed = 3
    minimum = fixed + -(-threads // 50) + -(-threads // 20)
    full, served = counted_sync(sb, run_sync, tctx, "bench-teams")
    print(f"\n5. Teams: {threads} threads (a root and 2 replies each), channel delta without replies")
    print(f"   full sync: interactions written {full.interactions_written} (anchor: {threads}); "
          f"requests {served}, fewest the API allows {minimum}: ratio {served / minimum:.3f}   (anchor: 1.0)")
    old = roots[len(roots) // 3]
    st.post_message(team.id, channel.id, "<p>Update: runbooks moved to the wiki.</p>", author=asker, reply_to=old.id)
    # the same 3, one empty delta page, one `$batch` per 20 known threads re-reading their replies
    # (a reply does not bring its root back into the delta), one `$batch` reading the changed root
    minimum = fixed + 1 + -(-threads // 20) + 1
    inc, served = counted_sync(sb, run_sync, tctx, "bench-teams")
    print(f"   one new reply to an old thread, incremental sync: interactions written {inc.interactions_written} "
          f"(anchor: 1); requests {served}, fewest the API allows {minimum}: ratio {served / minimum:.3f}   "
          "(anchor: 1.0)")


def measure_batch(ctx: object, drive_id: str, item_ids: list[str]) -> tuple[tuple[int, float], tuple[int, float]]:
    """(round trips, seconds) for reading every item's permissions one by one, then with `$batch`."""
    connector = ctx.connector("bench")  # type: ignore[attr-defined]
    with connector.graph() as w:
        items = w.client.drives.by_drive_id(drive_id).items
        before = w.session.http.stats.requests
        t0 = time.monotonic()

        async def one_by_one() -> None:  # the same adapter and JSON reading as the batched path
            for item_id in item_ids:
                info = items.by_drive_item_id(item_id).permissions.to_get_request_information()
                await w.session.json(info, "permissions", "Files.Read.All")

        w.session.run(one_by_one())
        single = (w.session.http.stats.requests - before, time.monotonic() - t0)
        before = w.session.http.stats.requests
        t0 = time.monotonic()
        requests = {str(n): items.by_drive_item_id(i).permissions.to_get_request_information()
                    for n, i in enumerate(item_ids)}
        answers = w.session.run(w.session.batch(requests, "permissions", "Files.Read.All"))
        assert all(a.status == 200 for a in answers.values())
        batched = (w.session.http.stats.requests - before, time.monotonic() - t0)
    return single, batched


if __name__ == "__main__":
    main()
