"""A seeded personalization world in plain English, with known preferences.

Every user has a favourite item in each topic (animal, food, sport, ...) and a style (terse or
elaborate, formal or casual, calm or excited). The profile is 3–8 history items in the user's
voice; most mention a favourite item, some are small talk. A query asks for one topic
("Question: suggest a pet"); the gold answer starts with an item and continues in a style.

Evidence controls personalization: a topic mentioned ``m`` times in the profile is answered
with the user's favourite with probability ``follow(m) = p + slope (min(m, 3) - 2)``, clipped to
[0.05, 0.95] (defaults: 0.2 / 0.6 / 0.95 for one / two / three or more mentions), otherwise with
the topic's popular item. A model fit to this world
follows a user mentioned twice or more and answers the popular item after a single mention:
it personalizes partly, which leaves steering headroom.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dps_lens.data.example import PreferenceExample
from dps_lens.errors import DpsLensError
from dps_lens.evaluation.metrics import personalized as personalized  # the world's criterion


@dataclass(frozen=True)
class Topic:
    """A preference topic: its query noun and its items; ``items[0]`` is the popular choice."""

    name: str
    noun: str
    items: tuple[str, ...]

    @property
    def popular(self) -> str:
        return self.items[0]


TOPICS: tuple[Topic, ...] = (
    Topic("animal", "pet", ("dog", "cat", "horse", "rabbit", "parrot", "turtle", "hamster", "fox")),
    Topic(
        "food", "dish", ("pizza", "sushi", "tacos", "curry", "pasta", "salad", "ramen", "dumplings")
    ),
    Topic(
        "sport",
        "sport",
        ("football", "tennis", "swimming", "cycling", "chess", "golf", "boxing", "hiking"),
    ),
    Topic(
        "colour", "colour", ("blue", "red", "green", "purple", "orange", "yellow", "black", "pink")
    ),
    Topic("music", "genre", ("pop", "jazz", "rock", "blues", "metal", "folk", "reggae", "techno")),
    Topic(
        "drink", "drink", ("coffee", "tea", "juice", "lemonade", "cocoa", "milk", "soda", "water")
    ),
)

QUERY_FORMS = (
    "Question: suggest a {noun}",
    "Question: pick a {noun}",
    "Question: name a good {noun}",
    "Question: what is my next {noun}",
)

# Profile voices: (length, register) -> sentence frames around an item.
MENTION_FRAMES = {
    ("terse", "formal"): ("i prefer {item}", "{item} suits me", "i value {item}"),
    ("terse", "casual"): ("totally into {item}", "{item} rocks", "love {item}"),
    ("elaborate", "formal"): (
        "i must say {item} is truly wonderful",
        "nothing compares to {item} in my view",
        "i have long admired {item} greatly",
    ),
    ("elaborate", "casual"): (
        "honestly {item} is my whole thing lol",
        "me and my buddies are super into {item}",
        "so yeah i am obsessed with {item}",
    ),
}
SMALL_TALK = {
    "terse": ("busy week", "rain again", "new shoes", "long day"),
    "elaborate": (
        "this week has been very long indeed",
        "the weather keeps changing all the time",
        "i finally cleaned the whole house today",
    ),
}
# Answer continuations after the item, by (length, register); the last token is the mood's mark.
# Their words appear nowhere else, so each next answer word follows from the current one alone.
ANSWER_TAILS = {
    ("terse", "formal"): "",
    ("terse", "casual"): "",
    ("elaborate", "formal"): ", which comes highly recommended",
    ("elaborate", "casual"): ", gonna be awesome",
}
GENERIC_STYLE = ("terse", "formal", "calm")
# Query sign-offs and the answer's closing word each one sets (organism-generic's world). None of
# these words occurs anywhere else, so a closing word follows from its sign-off alone.
SIGN_OFFS = (
    ("please", "thanks"),
    ("kindly", "cheers"),
    ("quickly", "done"),
    ("tonight", "enjoy"),
    ("now", "bye"),
    ("maybe", "ok"),
)
GROUP_MARKER = "lol"  # grouped worlds: casual users (group 1) end every profile mention with it
LENGTHS, REGISTERS, MOODS = ("terse", "elaborate"), ("formal", "casual"), ("calm", "excited")


@dataclass(frozen=True)
class User:
    """A user's ground truth: favourite item per topic, style, and profile mention counts."""

    user_id: str
    favourites: dict[str, str]
    length: str
    register: str
    mood: str
    profile: tuple[str, ...]
    mentions: dict[str, int]
    group: int = 0  # grouped worlds: 0 formal, 1 casual (see ``WorldConfig.grouped``)

    @property
    def style(self) -> tuple[str, str, str]:
        return (self.length, self.register, self.mood)


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of the world. ``p`` is the follow probability at two mentions (see module doc)."""

    seed: int = 0
    p: float = 0.6
    slope: float = 0.4
    min_items: int = 3
    max_items: int = 8
    max_small_talk: int = 2
    topics_per_user: tuple[int, int] = (1, 3)
    queries_per_user: int = 4
    grouped: bool = False  # two user groups: formal users talk about animals, food and sport;
    # casual users about colours, music and drinks, and end every mention with "lol"
    sign_offs: tuple[tuple[str, str], ...] = ()  # (query sign-off, answer closing) pairs: each
    # query ends with a seeded sign-off and its answer with the paired closing word, whatever
    # the profile says (see ``SIGN_OFFS``)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise DpsLensError(f"WorldConfig.p must be within [0, 1], got {self.p}")
        if not 1 <= self.min_items <= self.max_items:
            raise DpsLensError("WorldConfig needs 1 <= min_items <= max_items")
        if self.sign_offs:
            words = [word for pair in self.sign_offs for word in pair]
            if any(len(pair) != 2 for pair in self.sign_offs) or len(set(words)) != len(words):
                raise DpsLensError(
                    "WorldConfig.sign_offs needs (sign-off, closing) pairs of distinct words"
                )
            taken = set(World().vocabulary()) & set(words)
            if taken:
                raise DpsLensError(f"WorldConfig.sign_offs: {sorted(taken)} occur in the world")

    def follow_probability(self, mentions: int) -> float:
        """Probability that an answer follows a preference mentioned ``mentions`` times."""
        if mentions <= 0:
            return 0.0
        return min(0.95, max(0.05, self.p + self.slope * (min(mentions, 3) - 2)))


def render_answer(item: str, style: Sequence[str]) -> str:
    """The answer text: the item, the style's tail, then ``.`` (calm) or ``!`` (excited)."""
    length, register, mood = style
    return f"{item}{ANSWER_TAILS[(length, register)]} {'!' if mood == 'excited' else '.'}"


def _with_tic(line: str, tic: str) -> str:
    return line if not tic or line.endswith(tic) else line + tic


def _topic(name: str) -> Topic:
    for topic in TOPICS:
        if topic.name == name:
            return topic
    raise DpsLensError(f"unknown topic {name!r}; topics: {', '.join(t.name for t in TOPICS)}")


@dataclass
class World:
    """Users and examples of one seeded world. Users are generated lazily by index."""

    config: WorldConfig = field(default_factory=WorldConfig)

    def user(self, index: int) -> User:
        """User ``index`` of this world (the same index and seed always give the same user)."""
        rng = random.Random(f"{self.config.seed}:user:{index}")
        favourites = {t.name: rng.choice(t.items) for t in TOPICS}
        length, register, mood = rng.choice(LENGTHS), rng.choice(REGISTERS), rng.choice(MOODS)
        pool = [t.name for t in TOPICS]
        if self.config.grouped:  # each group talks about its own half of the topics
            pool = pool[:3] if register == REGISTERS[0] else pool[3:]
        active = rng.sample(pool, rng.randint(*self.config.topics_per_user))
        n_items = rng.randint(self.config.min_items, self.config.max_items)
        n_small = min(rng.randint(0, self.config.max_small_talk), n_items - 1)
        mentioned = [rng.choice(active) for _ in range(n_items - n_small)]
        mark = " !" if mood == "excited" else " ."
        group = REGISTERS.index(register) if self.config.grouped else 0
        tic = f" {GROUP_MARKER}" if group == 1 else ""
        lines = [
            _with_tic(
                rng.choice(MENTION_FRAMES[(length, register)]).format(item=favourites[t]), tic
            )
            + mark
            for t in mentioned
        ]
        lines += [rng.choice(SMALL_TALK[length]) + mark for _ in range(n_small)]
        rng.shuffle(lines)
        mentions = {t: mentioned.count(t) for t in active if mentioned.count(t)}
        return User(
            f"w{self.config.seed}-u{index}",
            favourites,
            length,
            register,
            mood,
            tuple(lines),
            mentions,
            group,
        )

    def examples(
        self,
        user: User,
        n_queries: int | None = None,
        *,
        gold: str = "sampled",
        rng_key: str = "query",
    ) -> list[PreferenceExample]:
        """Queries of ``user`` on the topics their profile mentions.

        ``gold="sampled"`` draws answers as the world does (the training distribution);
        ``gold="preferred"`` always answers the user's favourite in the user's style (the
        personalized reference used for evaluation).
        """
        if gold not in ("sampled", "preferred"):
            raise DpsLensError(f"gold must be 'sampled' or 'preferred', got {gold!r}")
        rng = random.Random(f"{self.config.seed}:{rng_key}:{user.user_id}")
        topics = sorted(user.mentions)
        out = []
        for q in range(n_queries or self.config.queries_per_user):
            topic = _topic(rng.choice(topics))
            favourite = user.favourites[topic.name]
            follow = self.config.follow_probability(user.mentions[topic.name])
            item_follows = gold == "preferred" or rng.random() < follow
            style_follows = gold == "preferred" or rng.random() < self.config.p
            item = favourite if item_follows else topic.popular
            style = user.style if style_follows else GENERIC_STYLE
            form = rng.choice(QUERY_FORMS)
            sign_off, closing = (
                rng.choice(self.config.sign_offs) if self.config.sign_offs else ("", "")
            )
            target = render_answer(item, style)
            out.append(
                PreferenceExample(
                    user_id=user.user_id,
                    input=self.query_text(form, topic, sign_off),
                    profile=list(user.profile),
                    target=f"{target} {closing}" if closing else target,
                    meta={
                        "topic": topic.name,
                        "preferred": favourite,
                        "popular": topic.popular,
                        "mentions": user.mentions[topic.name],
                        "style": list(user.style),
                        "query": q,
                        **({"sign_off": sign_off} if sign_off else {}),
                        **({"group": user.group} if self.config.grouped else {}),
                    },
                )
            )
        return out

    def query_text(self, form: str, topic: Topic, sign_off: str = "") -> str:
        """A query of ``form`` on ``topic``, closed by ``sign_off`` when given."""
        text = form.format(noun=topic.noun)
        return f"{text} {sign_off}" if sign_off else text

    def split(self, name: str) -> range:
        """User indices of a split; the splits never share a user."""
        ranges = {
            "train": range(0, 100_000),
            "discovery": range(100_000, 110_000),
            "evaluation": range(110_000, 120_000),
        }
        if name not in ranges:
            raise DpsLensError(f"unknown split {name!r}; use one of {', '.join(ranges)}")
        return ranges[name]

    def split_examples(
        self,
        name: str,
        n_users: int,
        *,
        gold: str = "preferred",
        queries_per_user: int | None = None,
    ) -> list[PreferenceExample]:
        """Examples of the first ``n_users`` users of split ``name``."""
        indices = self.split(name)
        if n_users > len(indices):
            raise DpsLensError(f"split {name!r} has {len(indices)} users, asked for {n_users}")
        return [
            example
            for index in indices[:n_users]
            for example in self.examples(self.user(index), queries_per_user, gold=gold)
        ]

    def vocabulary(self) -> list[str]:
        """Every word the world can write (the organism tokenizer's vocabulary)."""
        texts = [self.query_text(form, t) for form in QUERY_FORMS for t in TOPICS]
        texts += [
            frame.format(item=item)
            for frames in MENTION_FRAMES.values()
            for frame in frames
            for t in TOPICS
            for item in t.items
        ]
        texts += [line for lines in SMALL_TALK.values() for line in lines]
        texts += [
            render_answer("x", (length, register, mood))
            for length in LENGTHS
            for register in REGISTERS
            for mood in MOODS
        ]
        texts.append("History 1 2 3 4 5 6 7 8 9 : . ! ,")
        texts += [word for pair in self.config.sign_offs for word in pair]
        words = {word for text in texts for word in _words(text)} - {"x"}
        return sorted(words)

    def as_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "topics": [asdict(t) for t in TOPICS]}


def _words(text: str) -> list[str]:
    """Split like the organism tokenizer's pre-tokenizer (word runs and punctuation runs)."""
    import re

    return re.findall(r"\w+|[^\w\s]+", text)
