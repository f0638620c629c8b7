"""Realistic ``app.bsky.feed.post`` records: multilingual text, rich-text facets, replies, embeds.

Facets index the UTF-8 bytes of the text (``byteStart`` inclusive, ``byteEnd`` exclusive), as
the Bluesky lexicon requires, so multi-byte scripts and emoji exercise the consumers' offsets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from streampulse.replay.identifiers import encode_tid, random_blob_cid, random_cid

Record = dict[str, Any]

# Sentences per language tag; several scripts (CJK, Hangul, Arabic and Hebrew RTL, Devanagari,
# Cyrillic), emoji with ZWJ sequences, skin tones and flags, and an RTL mark.
TEXTS: dict[str, tuple[str, ...]] = {
    "en": (
        "Just finished reading the new report on coastal flooding, honestly alarming",
        "Good morning everyone! Coffee first, then emails ☕",
        "This is the best thread I've seen all week 😂",
        "Can't believe the game last night, what a finish 🏀🔥",
        "Anyone else stuck with the train delays today? Third time this week",
        "New blog post: building a tiny weather station with a solar panel",
        "People who pile on strangers for asking simple questions are the worst, just stop",
        "Shipping a release today 👩‍💻 fingers crossed nothing breaks",
        "My cat knocked the plant off the shelf again 🐈 send help",
        "Proud of the team 👍🏽 we finally hit the milestone",
        "Hot take: pineapple on pizza is fine and you all need to relax",
        "The sunset over the bay tonight 🌅 no filter needed",
    ),
    "ja": (
        "今日はとても良い天気ですね☀️散歩に行ってきます",
        "新しいアルバム最高すぎる…ずっと聴いてる🎧",
        "週末は京都に行ってきました。紅葉がきれいだった🍁",
        "締め切り前なのにまだ半分しか終わってない😇",
    ),
    "ko": ("오늘 점심 뭐 먹지? 🍜", "드디어 시험 끝났다!! 🎉 이제 잠만 잘 거야"),
    "zh": ("今天的会议开了三个小时，累死了😮‍💨", "这家面馆真的太好吃了，强烈推荐！"),  # noqa: RUF001
    "de": (
        "Heute endlich die Steuererklärung gemacht. Ich bin stolz auf mich 💪",
        "Der Zug hat schon wieder 40 Minuten Verspätung 🙄",
    ),
    "es": (
        "¡Qué partidazo anoche! No me lo puedo creer ⚽",
        "Buenos días, ¿alguien sabe si hoy abre la biblioteca?",
    ),
    "pt": ("Bom dia! Hoje tem feira no bairro 🇧🇷", "Que show incrível ontem, ainda estou rouca"),
    "fr": ("Franchement, cette série est incroyable, je recommande 📺",),
    "ar": ("صباح الخير يا أصدقاء، يوم جميل 🌞", "هذا الكتاب رائع جدا، أنصح بقراءته"),
    "he": ("בוקר טוב לכולם! ☕️ \u200fמה התוכניות להיום?",),
    "ru": ("Наконец-то выходные! Кто куда собирается?",),
    "tr": ("Bugün hava çok güzel, sahile gidiyoruz 🌊",),
    "hi": ("आज का मैच शानदार था! 🏏",),
    "uk": ("Доброго ранку! 🇺🇦 Гарного всім дня",),
}
# Relative frequency of each language (English-heavy, Japanese second, like the firehose).
LANG_WEIGHTS = {
    "en": 50, "ja": 14, "pt": 7, "de": 5, "es": 5, "ko": 4, "zh": 2, "fr": 3,
    "ar": 2, "he": 1, "ru": 2, "tr": 2, "hi": 1, "uk": 2,
}  # fmt: skip
HASHTAGS: dict[str, tuple[str, ...]] = {
    "en": ("bluesky", "news", "photography", "NBA", "gamedev", "climate", "AI", "art"),
    "ja": ("猫", "日本", "イラスト", "ゲーム"),
    "de": ("Fußball", "Bahn"),
    "es": ("fútbol", "música"),
    "pt": ("BBB", "música"),
}
LINKS = (
    "https://www.reuters.com/world/climate-report-coastal-flooding-2026-06-10/",
    "https://github.com/bluesky-social/jetstream",
    "https://www.youtube.com/watch?v=V5lDo-jw8mA",
    "https://en.wikipedia.org/wiki/Weather_station",
    "https://example.org/blog/2026/06/tiny-weather-station?ref=bsky",
    "https://www.nhk.or.jp/news/html/20260610/k10014.html",
)
ALT_TEXTS = ("A cat asleep on a keyboard", "Sunset over the bay", "", "Screenshot of a chart")


@dataclass(frozen=True, slots=True)
class PostRef:
    """A post in the stream that replies, quotes, likes and reposts can point at."""

    uri: str
    cid: str
    root_uri: str
    root_cid: str


@dataclass(frozen=True, slots=True)
class Mention:
    """An account a post can mention: the text shows the handle, the facet holds the DID."""

    did: str
    handle: str


class _RichText:
    """Text assembled piece by piece, with facets at the UTF-8 byte offsets of their pieces."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.facets: list[Record] = []

    def add(self, text: str, feature: Record | None = None) -> None:
        start = self.size
        self.parts.append(text)
        self.size += len(text.encode("utf-8"))
        if feature is not None:
            self.facets.append(
                {"features": [feature], "index": {"byteEnd": self.size, "byteStart": start}}
            )

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _display_url(url: str) -> str:
    """The shortened form the Bluesky app shows for long links."""
    bare = url.split("://", 1)[1].removeprefix("www.")
    return bare if len(bare) <= 30 else bare[:27] + "..."


def _compose(rng: random.Random, lang: str, mentions: list[Mention]) -> _RichText:
    rich = _RichText()
    if mentions and rng.random() < 0.12:
        who = rng.choice(mentions)
        rich.add(f"@{who.handle}", {"$type": "app.bsky.richtext.facet#mention", "did": who.did})
        rich.add(" ")
    rich.add(rng.choice(TEXTS[lang]))
    if rng.random() < 0.12:
        url = rng.choice(LINKS)
        rich.add(" ")
        shown = url if rng.random() < 0.3 else _display_url(url)
        rich.add(shown, {"$type": "app.bsky.richtext.facet#link", "uri": url})
    tags = HASHTAGS.get(lang, HASHTAGS["en"])
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3))):
        tag = rng.choice(tags)
        rich.add(" ")
        rich.add(f"#{tag}", {"$type": "app.bsky.richtext.facet#tag", "tag": tag})
    return rich


def _blob(rng: random.Random, mime: str, size: int) -> Record:
    return {
        "$type": "blob",
        "mimeType": mime,
        "ref": {"$link": random_blob_cid(rng)},
        "size": size,
    }


def _embed(rng: random.Random, quote: PostRef | None) -> Record | None:
    roll = rng.random()
    if quote is not None and roll < 0.06:
        return {"$type": "app.bsky.embed.record", "record": {"cid": quote.cid, "uri": quote.uri}}
    if roll < 0.16:
        images = [
            {
                "alt": rng.choice(ALT_TEXTS),
                "aspectRatio": {"height": rng.choice((1080, 1350, 2000)), "width": 1080},
                "image": _blob(rng, "image/jpeg", rng.randint(40_000, 950_000)),
            }
            for _ in range(rng.choice((1, 1, 1, 2, 4)))
        ]
        return {"$type": "app.bsky.embed.images", "images": images}
    if roll < 0.22:
        url = rng.choice(LINKS)
        external: Record = {"description": "", "title": _display_url(url), "uri": url}
        if rng.random() < 0.6:
            external = {**external, "thumb": _blob(rng, "image/jpeg", rng.randint(9000, 200_000))}
        return {"$type": "app.bsky.embed.external", "external": dict(sorted(external.items()))}
    if roll < 0.24:
        return {
            "$type": "app.bsky.embed.video",
            "aspectRatio": {"height": 1920, "width": 1080},
            "video": _blob(rng, "video/mp4", rng.randint(1_000_000, 40_000_000)),
        }
    return None


def make_post(
    rng: random.Random,
    *,
    created_at: str,
    mentions: list[Mention],
    reply_to: PostRef | None,
    quote: PostRef | None,
) -> Record:
    """A post record with keys in the lexicon's canonical (sorted) order."""
    lang = rng.choices(list(LANG_WEIGHTS), weights=list(LANG_WEIGHTS.values()))[0]
    rich = _compose(rng, lang, mentions)
    record: Record = {"$type": "app.bsky.feed.post", "createdAt": created_at}
    embed = _embed(rng, quote)
    if embed is not None:
        record["embed"] = embed
    if rich.facets:
        record["facets"] = rich.facets
    if rng.random() < 0.95:
        record["langs"] = [lang] if rng.random() < 0.93 else [lang, "en"]
    if reply_to is not None:
        record["reply"] = {
            "parent": {"cid": reply_to.cid, "uri": reply_to.uri},
            "root": {"cid": reply_to.root_cid, "uri": reply_to.root_uri},
        }
    record["text"] = rich.text
    return record


def outside_post(rng: random.Random, did: str, before_us: int) -> PostRef:
    """A post from before the stream began (so not in it), as old likes point at."""
    rkey = encode_tid(before_us - rng.randint(60, 86_400) * 1_000_000, rng.randrange(1024))
    uri = f"at://{did}/app.bsky.feed.post/{rkey}"
    cid = random_cid(rng)
    return PostRef(uri, cid, uri, cid)
