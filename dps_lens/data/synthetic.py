"""A small seeded personalization set in plain English, for quick runs without any download.

Each user has a favourite item in a few topics; the profile states it in the user's voice and the
target answers a query with it. Enough to exercise every tool; not a trained world.
"""

from __future__ import annotations

import random

from dps_lens.data.example import PreferenceExample

TOPICS: dict[str, tuple[str, ...]] = {
    "animal": ("cat", "dog", "horse", "owl", "fox", "otter"),
    "food": ("pizza", "sushi", "tacos", "curry", "pasta", "salad"),
    "colour": ("red", "blue", "green", "yellow", "purple", "orange"),
    "sport": ("tennis", "chess", "football", "cycling", "swimming", "golf"),
}
PROFILE_LINES = (
    "I think the best {topic} is the {item}.",
    "Today I talked about the {item} again.",
    "Nothing beats a {item}, honestly.",
)


def synthetic_examples(n_users: int = 8, queries_per_user: int = 2, seed: int = 0) -> list[PreferenceExample]:
    """``n_users × queries_per_user`` examples: one profile line per topic, targets naming the favourite."""
    rng = random.Random(seed)
    examples = []
    for user in range(n_users):
        favourites = {topic: rng.choice(items) for topic, items in TOPICS.items()}
        profile = [
            rng.choice(PROFILE_LINES).format(topic=topic, item=item)
            for topic, item in favourites.items()
        ]
        rng.shuffle(profile)
        for topic in rng.sample(list(TOPICS), queries_per_user):
            examples.append(
                PreferenceExample(
                    user_id=f"user{user}",
                    input=f"Question: which {topic} should I pick?",
                    profile=profile,
                    target=f"The {favourites[topic]}.",
                    meta={"topic": topic, "preferred": favourites[topic]},
                )
            )
    return examples
