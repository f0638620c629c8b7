"""Generated Jetstream events that look like the live firehose, deterministic by seed.

Each generated second creates exactly the likes, posts and follows of the matching profile
second (cycling the profile), plus the rarer traffic of the real firehose in proportion:
reposts, blocks, deletes, profile updates, identity and account events, non-Bluesky
collections. Accounts come from a pool with Zipf-like activity (a few very busy accounts);
likes, reposts, replies and quotes mostly point at posts generated earlier, with preferential
attachment, so per-post engagement has a realistic long tail.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

import orjson

from streampulse.events import BLOCK, FOLLOW, LIKE, POST, REPOST
from streampulse.replay.identifiers import encode_tid, iso_time, random_cid, random_did
from streampulse.replay.posts import Mention, PostRef, make_post, outside_post
from streampulse.replay.sources import RateProfile, SecondCounts

Event = dict[str, Any]

PROFILE = "app.bsky.actor.profile"
ACCOUNTS = 3000
ZIPF_EXPONENT = 0.9
# Extra traffic per second, as fractions of the profiled counts.
REPOST_PER_LIKE = 0.12
BLOCK_PER_FOLLOW = 0.06
DELETE_SHARE = 0.04
PROFILE_UPDATE_SHARE = 0.01
IDENTITY_SHARE = 0.004
ACCOUNT_SHARE = 0.003
OTHER_SHARE = 0.02

NAMES = ("alex", "mika", "sol", "yuki", "noor", "jonas", "ana", "li", "omar", "tess", "ravi")
OTHER_COLLECTIONS = (
    "fyi.unravel.frontpage.post",
    "sh.tangled.feed.star",
    "place.stream.chat.message",
    "com.whtwnd.blog.entry",
    "xyz.statusphere.status",
    "events.smokesignal.calendar.event",
)


@dataclass(frozen=True, slots=True)
class Account:
    did: str
    handle: str


class _Generator:
    def __init__(self, seed: int, profile: RateProfile, start_us: int) -> None:
        self.rng = random.Random(seed)
        self.profile = profile
        self.start_us = start_us
        rng = self.rng
        self.accounts = [
            Account(did, f"{rng.choice(NAMES)}{i}.bsky.social")
            for i, did in enumerate(random_did(rng) for _ in range(ACCOUNTS))
        ]
        weights = [1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(ACCOUNTS)]
        self.cum_weights = list(itertools.accumulate(weights))
        self.mentions = [Mention(a.did, a.handle) for a in self.accounts[:200]]
        self.posts: list[PostRef] = []
        self.attention: list[int] = []  # indices into posts, once per post and per engagement
        self.deletable: list[tuple[Account, str, str]] = []  # (author, collection, rkey)
        self.used_tids: set[str] = set()
        self.seq = 30_000_000_000 + rng.randrange(1_000_000_000)

    # --- identifiers ---

    def account(self) -> Account:
        return self.rng.choices(self.accounts, cum_weights=self.cum_weights)[0]

    def tid(self, unix_us: int) -> str:
        """A TID not handed out before (revs and rkeys stay unique across the stream)."""
        while True:
            tid = encode_tid(unix_us, self.rng.randrange(1024))
            if tid not in self.used_tids:
                self.used_tids.add(tid)
                return tid
            unix_us += 1

    def next_seq(self) -> int:
        self.seq += self.rng.randint(1, 40)
        return self.seq

    # --- the mix of one second ---

    def _count(self, expected: float) -> int:
        """``expected`` rounded up or down at random, keeping the mean."""
        whole = int(expected)
        return whole + (self.rng.random() < expected - whole)

    def second_kinds(self, counts: SecondCounts) -> list[str]:
        total = counts.total
        kinds = ["like"] * counts.likes + ["post"] * counts.posts + ["follow"] * counts.follows
        kinds += ["repost"] * self._count(counts.likes * REPOST_PER_LIKE)
        kinds += ["block"] * self._count(counts.follows * BLOCK_PER_FOLLOW)
        kinds += ["delete"] * self._count(total * DELETE_SHARE)
        kinds += ["profile"] * self._count(total * PROFILE_UPDATE_SHARE)
        kinds += ["identity"] * self._count(total * IDENTITY_SHARE)
        kinds += ["account"] * self._count(total * ACCOUNT_SHARE)
        kinds += ["other"] * self._count(total * OTHER_SHARE)
        self.rng.shuffle(kinds)
        return kinds

    # --- events ---

    def commit(
        self, who: Account, time_us: int, operation: str, collection: str, *, rkey: str, record: Any
    ) -> Event:
        commit: Event = {
            "rev": self.tid(time_us - self.rng.randint(200, 40_000)),
            "operation": operation,
            "collection": collection,
            "rkey": rkey,
        }
        if record is not None:
            commit["record"] = record
            commit["cid"] = random_cid(self.rng)
        return {"did": who.did, "time_us": time_us, "kind": "commit", "commit": commit}

    def created(self, time_us: int) -> tuple[int, str]:
        """When a record was made (a little before Jetstream saw it) and its ISO form."""
        made = time_us - int(self.rng.expovariate(1 / 700_000)) - 50_000
        return made, iso_time(made)

    def engaged_post(self, time_us: int) -> PostRef:
        rng = self.rng
        if not self.posts or rng.random() < 0.1:
            return outside_post(rng, self.account().did, time_us)
        if rng.random() < 0.65:
            index = rng.choice(self.attention)
        else:
            index = rng.randrange(max(0, len(self.posts) - 300), len(self.posts))
        self.attention.append(index)
        return self.posts[index]

    def make(self, kind: str, time_us: int) -> Event:  # noqa: PLR0911 - one branch per kind
        rng = self.rng
        who = self.account()
        made_us, created_at = self.created(time_us)
        if kind in ("like", "repost"):
            post = self.engaged_post(time_us)
            collection = LIKE if kind == "like" else REPOST
            record = {
                "$type": collection,
                "createdAt": created_at,
                "subject": {"cid": post.cid, "uri": post.uri},
            }
            return self.create(who, time_us, collection, made_us, record)
        if kind == "post":
            reply_to = self.engaged_post(time_us) if rng.random() < 0.3 else None
            quote = self.engaged_post(time_us) if self.posts and rng.random() < 0.1 else None
            record = make_post(
                rng, created_at=created_at, mentions=self.mentions, reply_to=reply_to, quote=quote
            )
            event = self.create(who, time_us, POST, made_us, record)
            uri = f"at://{who.did}/{POST}/{event['commit']['rkey']}"
            cid = event["commit"]["cid"]
            root = (reply_to.root_uri, reply_to.root_cid) if reply_to else (uri, cid)
            self.attention.append(len(self.posts))
            self.posts.append(PostRef(uri, cid, *root))
            return event
        if kind in ("follow", "block"):
            collection = FOLLOW if kind == "follow" else BLOCK
            subject = self.account().did if kind == "follow" else rng.choice(self.accounts).did
            record = {"$type": collection, "createdAt": created_at, "subject": subject}
            return self.create(who, time_us, collection, made_us, record)
        if kind == "delete":
            return self.delete(time_us)
        if kind == "profile":
            record = {
                "$type": PROFILE,
                "createdAt": iso_time(made_us - 86_400_000_000 * rng.randint(1, 900)),
                "description": rng.choice(("she/her 🌈", "Photographer 📷 Lisbon", "bot?", "")),
                "displayName": who.handle.split(".")[0].title(),
            }
            return self.commit(who, time_us, "update", PROFILE, rkey="self", record=record)
        if kind == "identity":
            body = {"did": who.did, "handle": who.handle, "seq": self.next_seq()}
            body["time"] = created_at
            return {"did": who.did, "time_us": time_us, "kind": "identity", "identity": body}
        if kind == "account":
            active = rng.random() < 0.8
            account: Event = {"active": active, "did": who.did, "seq": self.next_seq()}
            if not active:
                account["status"] = rng.choice(("deactivated", "takendown", "suspended"))
            account["time"] = created_at
            return {"did": who.did, "time_us": time_us, "kind": "account", "account": account}
        return self.other(who, time_us, made_us, created_at)

    def create(
        self, who: Account, time_us: int, collection: str, made_us: int, record: Any
    ) -> Event:
        rkey = self.tid(made_us)
        self.deletable.append((who, collection, rkey))
        return self.commit(who, time_us, "create", collection, rkey=rkey, record=record)

    def delete(self, time_us: int) -> Event:
        rng = self.rng
        if self.deletable:
            slot = rng.randrange(len(self.deletable))
            self.deletable[slot], self.deletable[-1] = self.deletable[-1], self.deletable[slot]
            who, collection, rkey = self.deletable.pop()
        else:
            who, collection = self.account(), LIKE
            rkey = self.tid(time_us - rng.randint(1, 30) * 86_400_000_000)
        return self.commit(who, time_us, "delete", collection, rkey=rkey, record=None)

    def other(self, who: Account, time_us: int, made_us: int, created_at: str) -> Event:
        rng = self.rng
        collection = rng.choice(OTHER_COLLECTIONS)
        record: Event = {"$type": collection, "createdAt": created_at}
        if collection == "fyi.unravel.frontpage.post":
            record |= {"title": "Show: a tiny weather station", "url": "https://example.org/ws"}
        elif collection == "sh.tangled.feed.star":
            record["subject"] = f"at://{self.account().did}/sh.tangled.repo/{self.tid(made_us)}"
        elif collection == "place.stream.chat.message":
            record |= {"streamer": self.account().did, "text": rng.choice(("gg", "lol 😂", "hi"))}
        elif collection == "xyz.statusphere.status":
            record["status"] = rng.choice(("🙂", "🦋", "🔥", "😴"))
        else:
            record["name"] = "Community meetup"
        return self.create(who, time_us, collection, made_us, record)


def generate(seed: int, profile: RateProfile, start_us: int, count: int) -> list[bytes]:
    """``count`` events from ``start_us`` on (a whole second), serialised like Jetstream's."""
    generator = _Generator(seed, profile, start_us)
    out: list[bytes] = []
    second = 0
    while len(out) < count:
        kinds = generator.second_kinds(profile.at(second))[: count - len(out)]
        offsets = sorted(generator.rng.sample(range(1_000_000), len(kinds)))
        base = start_us + second * 1_000_000
        out.extend(
            orjson.dumps(generator.make(kind, base + offset))
            for kind, offset in zip(kinds, offsets, strict=True)
        )
        second += 1
    return out
