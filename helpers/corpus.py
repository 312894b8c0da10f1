"""Text the course can always use offline: short stories generated from a seed, and splits.

Two small probabilistic grammars write simple children's stories, one in English (the base
model's pretraining data) and one in German (a second domain for fine-tuning). Each story
follows one of several plot arcs (a lost toy, sharing, a rescue, a fear overcome, ...), keeps
its named characters and their pronouns for the whole story and contains dialogue in quotes.
The text is regular enough for a model with about a million parameters to learn, and varied
enough that sampling has something to choose from. Nothing is downloaded or copied: the same
seed always gives the same text, on every machine.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STORY_SEPARATOR = "\n\n"  # stories are separated by one blank line; no story contains one
CORPORA = ("english", "german")
_MAX_BYTES = 100_000_000


def _v(spec: str) -> tuple[str, ...]:
    """Split a '|'-separated list of variants (keeps the word lists below compact)."""
    return tuple(s.strip() for s in spec.split("|"))


def _check_size(n_bytes: object, seed: object) -> None:
    if not isinstance(n_bytes, int) or isinstance(n_bytes, bool) or not 0 < n_bytes <= _MAX_BYTES:
        raise ValueError(f"n_bytes must be an int in 1..{_MAX_BYTES:_}, got {n_bytes!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")


def _generate(make_story: Callable[[random.Random], str], n_bytes: int, seed: int) -> str:
    """Draw stories until ``n_bytes`` UTF-8 bytes are reached, skipping exact duplicates.

    Skipping duplicates matters for the splits: a story can then be in only one of them.
    """
    r = random.Random(seed)
    seen: set[str] = set()
    stories: list[str] = []
    total = 0
    while total < n_bytes:
        story = make_story(r)
        if story in seen:
            continue
        seen.add(story)
        stories.append(story)
        total += len(story.encode("utf-8")) + len(STORY_SEPARATOR)
    return STORY_SEPARATOR.join(stories)


def _count(r: random.Random, p_more: float, most: int) -> int:
    """How many items a list gets: 1, then one more with probability ``p_more`` each time.

    With ``p_more`` > 0.5, "one more" is always the likelier next step. Sampling stops such a list
    after a few items, but greedy decoding keeps taking the likelier step: a repetition loop.
    """
    n = 1
    while n < most and r.random() < p_more:
        n += 1
    return n


def _join(sentences: list[str]) -> str:
    """Sentences joined with spaces; a "\\n" item starts a new paragraph (one line break)."""
    return " ".join(sentences).replace(" \n ", "\n").strip()


# ----------------------------------------------------------------------------------------------
# English
# ----------------------------------------------------------------------------------------------

_EN_GIRLS = _v("Lily|Mia|Anna|Sara|Emma|Lucy|Zoe|Ella|Rosa|Ruby|Kate|Clara")  # few names: each is seen often
_EN_BOYS = _v("Tom|Ben|Max|Sam|Leo|Jack|Tim|Finn|Noah|Hugo|Paul|Felix")
_EN_ANIMALS = _v("cat|dog|bunny|bear|fox|mouse|duck|frog|bird|owl|lion|pig|horse|turtle|squirrel|puppy|kitten|dragon")
_EN_TRAITS = _v("little|small|kind|brave|happy|curious|shy|clever|funny|friendly|busy|gentle|cheerful|young")
_EN_HOMES = _v(
    "in a small house near the forest|in a big city|on a farm|in a little village by the sea"
    "|in a cozy house with a red door|in a tall house on a hill|next to a quiet lake|in a busy town"
)
_EN_PLACES = (  # (noun, "at"-phrase)
    ("park", "in the park"), ("forest", "in the forest"), ("garden", "in the garden"),
    ("beach", "on the beach"), ("farm", "on the farm"), ("lake", "by the lake"),
    ("river", "by the river"), ("hill", "on the hill"), ("meadow", "in the meadow"),
    ("playground", "on the playground"), ("backyard", "in the backyard"), ("pond", "by the pond"),
    ("field", "in the field"), ("woods", "in the woods"), ("market", "at the market"),
)
_EN_COLORS = _v("red|blue|green|yellow|pink|purple|orange|white|brown|golden|silver")
_EN_QUALITIES = _v("big|small|shiny|soft|old|new|tiny|round|pretty|special|little")
_EN_OBJECTS = _v(
    "ball|kite|hat|box|book|toy car|teddy bear|doll|drum|boat|shell|stone|balloon|key|bell"
    "|blanket|cup|scarf|bike|bucket|ring|robot|train|basket|whistle|marble|truck|umbrella"
)
_EN_SPOTS = _v(
    "under the bench|behind the big tree|in the tall grass|near the pond|under a pile of leaves"
    "|next to the swings|behind a rock|under a bush|in the sand|by the old fence|under the slide"
)
_EN_TIMES = _v(
    "One day|One sunny morning|One morning|Early in the morning|After lunch|Later that day"
    "|In the afternoon|The next day|One rainy afternoon|On a warm summer day|On a cold winter day"
    "|One evening|On a windy day|One spring morning"
)
_EN_FEELINGS_BAD = _v("sad|upset|worried|unhappy")
_EN_WEATHER = _v(
    "The sun was shining.|The sky was blue and clear.|It was a windy day.|The birds were singing."
    "|The air was warm.|There were white clouds in the sky.|It was a bright and sunny day."
)
_EN_FUN = (  # (base form, past form) of things to do
    ("play with a ball", "played with a ball"), ("fly a kite", "flew a kite"),
    ("build a sandcastle", "built a sandcastle"), ("read a book", "read a book"),
    ("draw pictures", "drew pictures"), ("pick flowers", "picked flowers"),
    ("climb trees", "climbed trees"), ("splash in the water", "splashed in the water"),
    ("play hide and seek", "played hide and seek"), ("ride a bike", "rode a bike"),
    ("look at the clouds", "looked at the clouds"), ("chase butterflies", "chased butterflies"),
    ("sing songs", "sang songs"), ("jump in puddles", "jumped in puddles"),
    ("dance in the sun", "danced in the sun"), ("count the stars", "counted the stars"),
    ("play tag", "played tag"), ("look for bugs", "looked for bugs"),
)


_EN_PLAY = _v(
    "played tag|played hide and seek|flew a kite|built a sandcastle|sang songs|drew pictures|jumped in puddles"
    "|looked for bugs|chased butterflies|climbed a tree|splashed in the water|picked flowers|had a picnic"
)


def _en_play_list(r: random.Random) -> list[str]:
    acts = r.sample(_EN_PLAY, _count(r, 0.7, 8))
    if len(acts) == 1:
        return [f"They {acts[0]}."]
    return [f"First they {acts[0]}."] + [f"Then they {a}." for a in acts[1:]]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _en_person(r: random.Random, avoid: str = "") -> dict[str, str]:
    female = r.random() < 0.5
    name = r.choice(_EN_GIRLS if female else _EN_BOYS)
    while name == avoid:
        name = r.choice(_EN_GIRLS if female else _EN_BOYS)
    kind = ("girl" if female else "boy") if r.random() < 0.6 else r.choice(_EN_ANIMALS)
    he, him, his = ("she", "her", "her") if female else ("he", "him", "his")
    return {"name": name, "kind": kind, "he": he, "him": him, "his": his}


def _en_cast(r: random.Random) -> dict[str, str]:
    """Everything a story refers to: hero (H), friend (F), parent (M), place, object, time."""
    h = _en_person(r)
    f = _en_person(r, avoid=h["name"])
    place, at_place = r.choice(_EN_PLACES)
    obj = r.choice(_EN_OBJECTS)
    od = f"{r.choice(_EN_COLORS)} {obj}" if r.random() < 0.6 else f"{r.choice(_EN_QUALITIES)} {obj}"
    parent = r.choice(("mom", "dad"))
    fun, fun_past = r.choice(_EN_FUN)
    c = {
        "H": h["name"], "hk": h["kind"], "he": h["he"], "him": h["him"], "his": h["his"],
        "He": h["he"].capitalize(), "His": h["his"].capitalize(), "trait": r.choice(_EN_TRAITS),
        "F": f["name"], "fk": f["kind"], "fhe": f["he"], "fhim": f["him"], "fhis": f["his"],
        "fHe": f["he"].capitalize(),
        "Fthe": f"{h['name']}'s friend {f['name']}" if f["kind"] in ("girl", "boy") else f"{f['name']} the {f['kind']}",
        "M": parent, "Mc": parent.capitalize(), "mhe": "she" if parent == "mom" else "he",
        "P": place, "atP": at_place, "O": obj, "Od": od, "aOd": _a(od),
        "T": r.choice(_EN_TIMES), "home": r.choice(_EN_HOMES), "fun": fun, "funp": fun_past,
        "bad": r.choice(_EN_FEELINGS_BAD),
    }
    return c


def _en_say(r: random.Random, who: str, line: str) -> str:
    """One line of dialogue with a speech tag: "Hello," said Tom. / Tom said, "Hello."."""
    if r.random() < 0.2:
        verb = "asked" if line.endswith("?") else r.choice(("said", "said", "called"))
        return f'{who} {verb}, "{line}"'
    end = line[-1]
    if end == "?":
        verb = "asked"
    elif end == "!":
        verb = r.choice(("said", "shouted", "cried", "said"))
    else:
        verb = r.choice(("said", "said", "said", "whispered"))
        line = line[:-1] + ","
    return f'"{line}" {verb} {who}.'


def _en_intro(r: random.Random, c: dict[str, str]) -> list[str]:
    first = r.choice(_v(
        "Once upon a time, there was a {trait} {hk} named {H}.|There once was a {trait} {hk} called {H}."
        "|{H} was a {trait} {hk} who lived {home}.|Once there was a {trait} {hk}. {His} name was {H}."
    ))
    second = r.choice(_v(
        "{He} loved to {fun}.|Every day, {he} liked to {fun}.|{H} liked to {fun} with {his} friends."
        "|{He} lived {home} with {his} {M}.|{H} was always full of ideas."
    ))
    if first.startswith("{H} was") and "{home}" in second:
        second = "{He} loved to {fun}."
    return [first.format_map(c), second.format_map(c)]


def _en_lost(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _en_intro(r, c)
    s.append(r.choice(_v("{He} had {aOd}. It was {his} favorite thing.|{H} had {aOd} that {he} loved very much."
                         "|{His} grandma gave {him} {aOd}, and {he} took it everywhere.")).format_map(c))
    s.append(r.choice(_v("{T}, {H} took the {O} to the {P}.|{T}, {H} went to the {P} with {his} {O}.")).format_map(c))
    s.append(r.choice(_EN_WEATHER))
    s.append(r.choice(_v("{He} played {atP} all day.|{He} ran and laughed and had a lot of fun.")).format_map(c))
    s.append(r.choice(_v("When it was time to go home, the {O} was gone!|But when {he} looked down, {his} {O} was not there."
                         "|Then {he} wanted to play with {his} {O}, but it was gone.")).format_map(c))
    s.append("{H} looked everywhere, but {he} could not find it. {He} felt {bad} and began to cry.".format_map(c))
    s.append("\n")
    helper = c["F"] if r.random() < 0.6 else c["Mc"]
    if helper == c["F"]:
        s.append("Then {Fthe} came by.".format_map(c))
    s.append(_en_say(r, helper, r.choice(_v("Why are you crying, {H}?|What is wrong, {H}?|Are you okay, {H}?")).format_map(c)))
    s.append(_en_say(r, c["H"], r.choice(_v("I lost my {O}.|I can't find my {O}!|My {O} is gone.")).format_map(c)))
    s.append(_en_say(r, helper, r.choice(_v("Don't worry. I will help you look for it.|Let's look for it together!"
                                            "|We will find it. Come with me.")).format_map(c)))
    s.append("\n")
    spots = r.sample(_EN_SPOTS, _count(r, 0.7, 9) + 1)
    s.extend(f"They looked {spot}." for spot in spots[:-1])
    s.append(r.choice(_v(f"Then {helper} saw something {spots[-1]}.|At last, they saw something {spots[-1]}.")))
    s.append(r.choice(_v("It was the {O}!|It was {H}'s {O}!|There was the {Od}!")).format_map(c))
    if r.random() < 0.4:
        s.append(r.choice(_v("A little squirrel was sitting next to it.|A puppy was sniffing it.|A bird was looking at it.")))
    s.append("{H} was so happy. {He} hugged the {O} and then {he} hugged {helper}.".format_map({**c, "helper": helper}))
    s.append(_en_say(r, c["H"], r.choice(_v("Thank you for helping me!|Thank you so much!|You are the best!")).format_map(c)))
    s.append(r.choice(_v("From that day on, {H} always kept {his} {O} close.|After that, {H} never left {his} {O} behind."
                         "|{H} learned that friends help each other.")).format_map(c))
    return s


def _en_share(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _en_intro(r, c)
    s.append(r.choice(_v("{He} had {aOd}.|{H} got {aOd} for {his} birthday.")).format_map(c))
    s.append("{He} played with it every day.".format_map(c))
    s.append(r.choice(_v("{T}, {H} was playing with the {O} {atP} when {F} came by.|{T}, {Fthe} came to play with {H}.")).format_map(c))
    s.append("\n")
    s.append(_en_say(r, c["F"], r.choice(_v("Can I play with your {O} too?|May I have a turn with the {O}?|Can we play with it together?")).format_map(c)))
    s.append(_en_say(r, c["H"], r.choice(_v("No! It is mine.|No, it is my {O}!|Go away. I want to play alone.")).format_map(c)))
    s.append(r.choice(_v("{H} held the {O} tight.|{H} turned away.")).format_map(c))
    s.append(r.choice(_v("{F} felt sad and walked away.|{F} looked down and did not say anything.|{F} was sad. {fHe} sat down on the grass.")).format_map(c))
    s.append("\n")
    s.append(r.choice(_v("Soon {H} did not have fun anymore.|After a while, playing alone was boring.")).format_map(c))
    s.append("{He} thought about {F}.".format_map(c))
    s.append("{He} ran to {F} and said, \"I am sorry. Let's play together.\"".format_map(c))
    s.append(r.choice(_v("{F} smiled.|{F} smiled a big smile.|{F} was happy again.")).format_map(c))
    s.extend(_en_play_list(r))
    s.append(r.choice(_v("They took turns with the {O} until the sun went down.|They played with the {O} together all afternoon."
                         "|Together they had more fun than ever.")).format_map(c))
    s.append(r.choice(_v("{H} learned that sharing makes everyone happy.|Playing together was much more fun than playing alone."
                         "|From that day on, {H} and {F} were best friends.")).format_map(c))
    return s


_EN_FINDS = (  # (thing, what the hero does, what happens)
    ("a small wooden box", "{He} opened the box slowly.", "Inside, there was a little note. It said: Be kind to everyone."),
    ("an old map", "{He} looked at the map for a long time.", "The map showed a path to a big tree with a red ribbon."),
    ("a shiny key", "{He} picked up the key.", "It opened a tiny door at the bottom of an old tree."),
    ("a big golden egg", "{He} touched the egg gently.", "Crack! A tiny yellow bird came out and said, \"Peep!\""),
    ("a glowing stone", "{He} held the stone in {his} hand.", "The stone was warm, and it glowed brighter and brighter."),
    ("a tiny door in a tree", "{He} knocked on the door.", "A little mouse opened it and invited {him} in for tea."),
    ("a bottle with a letter", "{He} pulled the letter out of the bottle.", "The letter was from a girl who lived far away."),
)


def _en_explore(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _en_intro(r, c)
    s.append(r.choice(_v("{H} was very curious and liked to explore.|{H} always wanted to know what was new.")).format_map(c))
    s.append("{T}, {H} went to the {P} alone.".format_map(c) if r.random() < 0.5 else "{T}, {H} went to the {P}.".format_map(c))
    thing, act, result = r.choice(_EN_FINDS)
    s.append(f"{_cap(r.choice(_EN_SPOTS))}, {c['he']} found {thing}.")
    s.append(_en_say(r, c["H"], r.choice(_v("What is this?|Wow, look at this!|What could it be?"))))
    s.append(act.format_map(c))
    s.append(result.format_map(c))
    s.append("\n")
    s.append("{H} ran home to tell {his} {M}.".format_map(c))
    s.append(_en_say(r, c["H"], r.choice(_v("{Mc}, look what I found!|{Mc}, you will not believe it!"))
                     .format_map(c)))
    s.append(_en_say(r, c["Mc"], r.choice(_v("Wow! That is amazing!|What a great adventure!|You are a real explorer, {H}!"))
                     .format_map(c)))
    s.append(r.choice(_v("{H} smiled. It was the best day ever.|That night, {H} dreamed of more adventures."
                         "|{H} could not wait to go back to the {P}.")).format_map(c))
    return s


_EN_FEARS = (  # (fear, scene, brave act)
    ("the dark", "At night, {he} did not want {his} {M} to turn off the light.",
     "{He} closed {his} eyes and counted to ten in the dark."),
    ("thunder", "When the sky grew dark and loud, {he} hid under {his} blanket.",
     "{He} listened to the thunder and watched the rain on the window."),
    ("the big slide", "Every time {he} looked up at the big slide, {his} legs felt weak.",
     "{He} climbed up the ladder, sat down and slid all the way down."),
    ("the water", "{He} never went into the lake with the other kids.",
     "{He} stepped into the water, one foot and then the other."),
    ("the big dog next door", "When the big dog barked, {he} always ran inside.",
     "{He} held out {his} hand, and the big dog licked it."),
    ("the tall tree", "{He} never climbed the tall tree in the garden.",
     "{He} climbed up to the first branch and looked around."),
)


def _en_fear(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _en_intro(r, c)
    fear, scene, act = r.choice(_EN_FEARS)
    s.append(f"But {c['H']} was afraid of {fear}.")
    s.append(scene.format_map(c))
    s.append("\n")
    s.append(_en_say(r, c["H"], r.choice(_v("I am scared.|I can't do it.|I don't like it!"))))
    s.append(r.choice(_v("{His} {M} sat down next to {him}.|{His} {M} gave {him} a big hug.")).format_map(c))
    s.append(_en_say(r, c["Mc"], r.choice(_v("It is okay to be scared. Let's be brave together.|You are braver than you think."
                                             "|I am right here with you."))))
    s.append("{H} took a deep breath.".format_map(c))
    s.append(act.format_map(c))
    s.append(r.choice(_v("It was not so scary after all.|Nothing bad happened.|It was even a little fun.")))
    s.append("\n")
    s.append(_en_say(r, c["H"], r.choice(_v("I did it!|Look, I am brave!|That was easy!"))))
    s.append("{His} {M} smiled. {H} felt proud.".format_map(c))
    s.append(r.choice(_v(f"Now {c['H']} is not afraid of {fear} anymore.|From that day on, {c['H']} was a little braver.")))
    return s


_EN_RESCUES = (  # (animal, trouble, rescue, thanks)
    ("kitten", "was stuck high up in a tree", "{H} climbed up slowly and carried the kitten down.",
     "The kitten purred and rubbed its head on {his} hand."),
    ("bird", "had a hurt wing", "{H} put the bird in a soft box and gave it some water.",
     "A few days later, the bird could fly again. It sang a song for {him}."),
    ("duckling", "could not find its mother", "{H} walked with the duckling to the pond, where its mother was waiting.",
     "The mother duck said, \"Quack!\" It sounded like thank you."),
    ("puppy", "was stuck in the mud", "{H} pulled the puppy out and washed its paws.",
     "The puppy wagged its tail and licked {his} face."),
    ("turtle", "was lying on its back", "{H} turned the turtle over gently.",
     "The turtle looked at {him} and slowly walked away."),
    ("bunny", "was caught in a fence", "{H} held the wire open so the bunny could get out.",
     "The bunny hopped around {him} three times and ran into the grass."),
)


def _en_rescue(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _en_intro(r, c)
    s.append("{T}, {H} was walking {atP}.".format_map(c))
    s.append(r.choice(_EN_WEATHER))
    animal, trouble, rescue, thanks = r.choice(_EN_RESCUES)
    s.append(r.choice(_v("Suddenly, {he} heard a small sound.|Then {he} heard someone cry.")).format_map(c))
    s.append(f"It was a little {animal}. The {animal} {trouble}.")
    s.append("\n")
    s.append(_en_say(r, c["H"], f"Don't be afraid, little {animal}. I will help you."))
    s.append(rescue.format_map(c))
    s.append(thanks.format_map(c))
    s.append("\n")
    s.append(r.choice(_v("{H} felt warm inside.|{H} smiled all the way home.")).format_map(c))
    s.append("At home, {he} told {his} {M} about the {animal}.".format_map({**c, "animal": animal}))
    s.append(_en_say(r, c["Mc"], r.choice(_v("You have a kind heart, {H}.|I am proud of you.|That was very kind of you."))
                     .format_map(c)))
    s.append(r.choice(_v("Helping others made {H} happy.|{H} went to bed with a big smile.")).format_map(c))
    return s


_EN_PROJECTS = (  # (goal, steps, mishap, result)
    ("bake a cake", "They mixed flour, eggs and sugar in a big bowl.", "But {H} dropped the bowl, and flour went all over the floor.",
     "The cake was soft and sweet."),
    ("build a sandcastle", "They dug in the sand and made tall towers.", "But then a big wave came and washed the castle away.",
     "The new castle was even bigger than the first one."),
    ("make a card for grandma", "They cut paper and drew a big red heart.", "But {H} spilled water on the card.",
     "Grandma loved the card and put it on the wall."),
    ("plant a garden", "They dug small holes and put seeds in the ground.", "But a hungry bird came and ate some of the seeds.",
     "A few weeks later, the garden was full of flowers."),
    ("build a tree house", "They carried wood and nails to the old tree.", "But one board broke, and the roof fell down.",
     "The tree house was strong, and it had a little window."),
    ("make cookies", "They made the dough and cut it into little stars.", "But the first cookies got too dark in the oven.",
     "The cookies smelled so good that everyone came to the kitchen."),
)


def _en_project(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _en_intro(r, c)
    goal, step, mishap, result = r.choice(_EN_PROJECTS)
    s.append(f"{c['T']}, {c['H']} and {c['his']} {c['M']} wanted to {goal}.")
    s.append(step)
    s.append(mishap.format_map(c))
    s.append(r.choice(_v("{H} felt {bad}.|{H} was so {bad} that {he} wanted to stop.")).format_map(c))
    s.append("\n")
    s.append(_en_say(r, c["Mc"], r.choice(_v("That is okay. We can try again.|Don't give up! Let's try one more time."))))
    s.append(r.choice(_v("So they tried again, slowly and carefully.|This time they worked together.")))
    s.append(result)
    s.append("\n")
    s.append(_en_say(r, c["H"], r.choice(_v("We did it!|This is the best day ever!|Can we do it again tomorrow?"))))
    s.append(r.choice(_v("Later, {F} came over, and they shared it.|{H} learned that it is good to try again."
                         "|{H} and {his} {M} laughed together.")).format_map(c))
    return s


_EN_OUTINGS = (  # (place, things seen)
    ("zoo", ("a tall giraffe", "two lions", "a big elephant", "funny monkeys", "a sleepy bear", "pink birds")),
    ("beach", ("little crabs", "white boats", "big waves", "a starfish", "pretty shells", "loud seagulls")),
    ("farm", ("fat pigs", "a brown cow", "little chicks", "a white horse", "three sheep", "a red tractor")),
    ("forest", ("tall trees", "a little deer", "red mushrooms", "a busy squirrel", "a quiet owl", "a small stream")),
)


def _en_outing(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _en_intro(r, c)
    place, seen = r.choice(_EN_OUTINGS)
    things = r.sample(seen, _count(r, 0.7, 5) + 1)
    a = things[0]
    s.append(f"{c['T']}, {c['H']} and {c['his']} family went to the {place}.")
    s.append(r.choice(_EN_WEATHER))
    s.append(f"They saw {', '.join(things[:-1])} and {things[-1]}.")
    a = "the " + a.removeprefix("a ").removeprefix("an ")
    s.append(f"{c['H']} liked {a} best.")
    s.append(_en_say(r, c["H"], r.choice(_v(f"Look at {a}!|Can we stay here all day?|I love the {place}!"))))
    s.append("\n")
    s.append(r.choice(_v("Then the sky turned gray, and it started to rain.|In the afternoon, the wind got cold.")))
    s.append(r.choice(_v("They ran to the car and laughed.|They walked home under a big umbrella.")))
    s.append(r.choice(_v("At home, {his} {M} made warm soup.|At home, they had hot milk and bread.")).format_map(c))
    s.append(f"That night, {c['H']} dreamed about {a}.")
    return s


def _en_race(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _en_intro(r, c)
    s.append("{H} and {F} liked to race {atP}.".format_map(c))
    s.append(_en_say(r, c["F"], r.choice(_v("Let's see who is faster!|Ready, set, go!|I will win this time!"))))
    s.append("They ran as fast as they could. {F} was in front.".format_map(c))
    s.append("\n")
    s.append("Suddenly, {F} fell down and hurt {fhis} knee.".format_map(c))
    s.append("{H} stopped running. {He} helped {F} get up.".format_map(c))
    s.append(_en_say(r, c["F"], "Why did you stop? You could have won."))
    s.append(_en_say(r, c["H"], r.choice(_v("Because you are my friend.|Winning is not fun without you."))))
    s.append(r.choice(_v("They walked to the finish line together.|They walked home slowly, side by side.")))
    s.append(r.choice(_v("{F} smiled, and {H} smiled too.|That day, they both felt like winners.")).format_map(c))
    return s


_EN_GIFTS = ("drew a picture of the two of them", "made a crown out of paper", "picked the prettiest flowers",
             "wrote a little song", "painted a stone with red and blue dots", "made a bracelet out of beads")


def _en_gift(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _en_intro(r, c)
    s.append("{T}, {H} remembered that it was {F}'s birthday.".format_map(c))
    s.append("{He} wanted to give {F} a present, but {he} had no money.".format_map(c))
    s.append(r.choice(_v("{He} thought and thought.|{He} sat on {his} bed and thought for a long time.")).format_map(c))
    s.append(f"Then {c['he']} had an idea! {c['He']} {r.choice(_EN_GIFTS)}.")
    s.append("\n")
    s.append("{H} gave the present to {F}.".format_map(c))
    s.append(_en_say(r, c["H"], "Happy birthday! I made it for you."))
    s.append("{F} looked at it for a long time.".format_map(c))
    s.append(_en_say(r, c["F"], r.choice(_v("I love it! Thank you, {H}!|This is the best present ever!")).format_map(c)))
    if r.random() < 0.5:
        s.extend(_en_play_list(r))
    s.append(r.choice(_v("{H} was very happy.|{H} learned that the best gifts come from the heart.")).format_map(c))
    return s


_EN_ARCS = (_en_lost, _en_share, _en_explore, _en_fear, _en_rescue, _en_project, _en_outing, _en_race, _en_gift)


def _english_story(r: random.Random) -> str:
    c = _en_cast(r)
    s = r.choice(_EN_ARCS)(r, c)
    if r.random() < 0.15:
        s.append("The end.")
    return _join(s)


# ----------------------------------------------------------------------------------------------
# German: the same kind of stories, with articles declined by gender and case, verb-second main
# clauses and the verb at the end of subordinate clauses ("..., weil sie ihren Ball suchte.")
# ----------------------------------------------------------------------------------------------

_G = {"m": 0, "f": 1, "n": 2}
_DE_DEF = {"nom": ("der", "die", "das"), "acc": ("den", "die", "das"), "dat": ("dem", "der", "dem")}
_DE_EIN_END = {"nom": ("", "e", ""), "acc": ("en", "e", ""), "dat": ("em", "er", "em")}  # ein, mein, sein, ihr
_DE_ADJ_WEAK = {"nom": ("e", "e", "e"), "acc": ("en", "e", "e"), "dat": ("en", "en", "en")}  # after der/die/das
_DE_ADJ_MIXED = {"nom": ("er", "e", "es"), "acc": ("en", "e", "es"), "dat": ("en", "en", "en")}  # after ein-words


def _np(noun: str, gender: str, case: str, det: str = "der", adj: str = "") -> str:
    """A German noun phrase: ``_np("Ball", "m", "acc", "sein", "rot")`` -> "seinen roten Ball".

    ``det`` is "der" (definite), "" (no article: strong adjective endings, as in a vocative),
    or the stem of an ein-word ("ein", "mein", "dein", "sein", "ihr").
    """
    g = _G[gender]
    if det == "der":
        art, end = _DE_DEF[case][g], _DE_ADJ_WEAK[case][g]
    elif det == "":
        art, end = "", _DE_ADJ_MIXED[case][g]
    else:
        art, end = det + _DE_EIN_END[case][g], _DE_ADJ_MIXED[case][g]
    words = [w for w in (art, adj + end if adj else "", noun) if w]
    return " ".join(words)


_DE_GIRLS = _v("Lena|Mia|Emma|Hanna|Sophie|Marie|Anna|Clara|Greta|Paula|Frieda|Lotte")
_DE_BOYS = _v("Max|Paul|Felix|Jonas|Leon|Tim|Ben|Lukas|Emil|Moritz|Jakob|Fritz")
_DE_KINDS_F = (("Mädchen", "n"), ("Mädchen", "n"), ("Katze", "f"), ("Maus", "f"), ("Ente", "f"), ("Eule", "f"))
_DE_KINDS_M = (("Junge", "m"), ("Junge", "m"), ("Hund", "m"), ("Fuchs", "m"), ("Frosch", "m"), ("Igel", "m"))
_DE_TRAITS = _v("klein|mutig|fröhlich|neugierig|schüchtern|lieb|schlau|fleißig|freundlich|lustig")
_DE_HOMES = _v(
    "in einem kleinen Haus am Wald|in einer großen Stadt|auf einem Bauernhof|in einem kleinen Dorf am Meer"
    "|in einem gemütlichen Haus mit einer roten Tür|am Ufer eines stillen Sees|in einer Wohnung über der Bäckerei"
)
_DE_PLACES = (  # (where: dative, where to: accusative)
    ("im Park", "in den Park"), ("im Wald", "in den Wald"), ("im Garten", "in den Garten"),
    ("am Strand", "an den Strand"), ("auf dem Bauernhof", "auf den Bauernhof"), ("am See", "an den See"),
    ("am Fluss", "an den Fluss"), ("auf der Wiese", "auf die Wiese"), ("auf dem Spielplatz", "auf den Spielplatz"),
    ("auf dem Hügel", "auf den Hügel"), ("am Teich", "an den Teich"), ("auf dem Markt", "auf den Markt"),
)
_DE_OBJECTS = (
    ("Ball", "m"), ("Drachen", "m"), ("Hut", "m"), ("Teddy", "m"), ("Schlüssel", "m"), ("Eimer", "m"),
    ("Kreisel", "m"), ("Roller", "m"), ("Puppe", "f"), ("Kiste", "f"), ("Mütze", "f"), ("Trommel", "f"),
    ("Muschel", "f"), ("Kugel", "f"), ("Laterne", "f"), ("Tasche", "f"), ("Flöte", "f"), ("Buch", "n"),
    ("Boot", "n"), ("Auto", "n"), ("Fahrrad", "n"), ("Armband", "n"), ("Seil", "n"), ("Glöckchen", "n"),
)
_DE_ADJS = _v("rot|blau|grün|gelb|weiß|braun|golden|bunt|klein|neu|alt|schön|weich|glänzend|groß")
_DE_SPOTS = _v(
    "unter der Bank|hinter dem großen Baum|im hohen Gras|neben dem Teich|unter einem Haufen Blätter"
    "|neben der Schaukel|hinter einem Stein|unter einem Busch|im Sand|am alten Zaun|unter der Rutsche"
)
_DE_TIMES = _v(
    "Eines Tages|Am Morgen|An einem sonnigen Morgen|Nach dem Mittagessen|Am Nachmittag|Am nächsten Tag"
    "|An einem regnerischen Nachmittag|An einem warmen Sommertag|An einem kalten Wintertag|Am Abend"
    "|An einem windigen Tag|Früh am Morgen"
)
_DE_WEATHER = _v(
    "Die Sonne schien.|Der Himmel war blau.|Es war ein windiger Tag.|Die Vögel sangen.|Draußen war es warm."
    "|Am Himmel zogen weiße Wolken vorbei."
)
_DE_FUN = (  # (finite verb in the past, rest): "Sie malte gern Bilder." / "Jeden Tag malte Lena Bilder."
    ("malte", "Bilder"), ("baute", "Sandburgen"), ("las", "Bücher"), ("spielte", "Verstecken"),
    ("sang", "Lieder"), ("kletterte", "auf Bäume"), ("sammelte", "bunte Steine"), ("fuhr", "Fahrrad"),
    ("pflückte", "Blumen"), ("spielte", "Fangen"), ("hüpfte", "in Pfützen"), ("beobachtete", "die Wolken"),
    ("tanzte", "im Garten"), ("suchte", "Käfer im Gras"),
)


_DE_PLAY = (  # plural past: "Dann bauten sie eine Sandburg."
    ("spielten", "Fangen"), ("spielten", "Verstecken"), ("ließen", "einen Drachen steigen"), ("bauten", "eine Sandburg"),
    ("sangen", "Lieder"), ("malten", "Bilder"), ("hüpften", "in Pfützen"), ("suchten", "Käfer"),
    ("jagten", "Schmetterlinge"), ("kletterten", "auf einen Baum"), ("pflückten", "Blumen"), ("machten", "ein Picknick"),
)


def _de_play_list(r: random.Random) -> list[str]:
    acts = r.sample(_DE_PLAY, _count(r, 0.7, 8))
    if len(acts) == 1:
        return [f"Sie {acts[0][0]} {acts[0][1]}."]
    return [f"Zuerst {acts[0][0]} sie {acts[0][1]}."] + [f"Dann {v} sie {rest}." for v, rest in acts[1:]]


def _gen_s(name: str) -> str:
    """German genitive of a name: Lenas, but Max' and Fritz'."""
    return name + ("'" if name[-1] in "sxzß" else "s")


def _de_person(r: random.Random, avoid: str = "") -> dict[str, str]:
    female = r.random() < 0.5
    names = _DE_GIRLS if female else _DE_BOYS
    name = r.choice(names)
    while name == avoid:
        name = r.choice(names)
    kind, gender = r.choice(_DE_KINDS_F if female else _DE_KINDS_M)
    pro = ("sie", "sie", "ihr", "ihr") if female else ("er", "ihn", "ihm", "sein")  # nom, acc, dat, possessive
    return {"name": name, "kind": kind, "gender": gender, "female": female, "pro": pro}


def _de_cast(r: random.Random) -> dict[str, str]:
    h = _de_person(r)
    f = _de_person(r, avoid=h["name"])
    er, ihn, ihm, sein = h["pro"]
    loc, dest = r.choice(_DE_PLACES)
    obj, og = r.choice(_DE_OBJECTS)
    adj = r.choice(_DE_ADJS)
    parent, pg = ("Mama", "f") if r.random() < 0.5 else ("Papa", "m")
    fun_v, fun_rest = r.choice(_DE_FUN)
    trait = r.choice(_DE_TRAITS)
    c = {
        "H": h["name"], "Hs": _gen_s(h["name"]), "er": er, "Er": _cap(er), "ihn": ihn, "ihm": ihm,
        "kind": _np(h["kind"], h["gender"], "nom", "ein", trait), "der_kind": _DE_DEF["nom"][_G[h["gender"]]],
        "F": f["name"], "fer": f["pro"][0], "fEr": _cap(f["pro"][0]),
        "M": parent, "sein_M": _np(parent, pg, "nom", sein), "Sein_M": _cap(_np(parent, pg, "nom", sein)),
        "seinem_M": _np(parent, pg, "dat", sein), "seine_Familie": _np("Familie", "f", "dat", sein),
        "seiner_Decke": _np("Decke", "f", "dat", sein), "seine_Knie": ("seine" if sein == "sein" else "ihre") + " Knie",
        "loc": loc, "dest": dest, "home": r.choice(_DE_HOMES),
        "O": obj, "ein_O": _np(obj, og, "acc", "ein", adj), "der_O": _np(obj, og, "nom"), "den_O": _np(obj, og, "acc"),
        "meinen_O": _np(obj, og, "acc", "mein"), "deinem_O": _np(obj, og, "dat", "dein"),
        "seinen_O": _np(obj, og, "acc", sein), "O_pro": ("ihn", "sie", "es")[_G[og]],
        "T": r.choice(_DE_TIMES), "fv": fun_v, "fr": fun_rest,
        "friends": "Freundinnen" if h["female"] and f["female"] else "Freunde",
        "Entdecker": "Entdeckerin" if h["female"] else "Entdecker",
    }
    return c


def _de_say(r: random.Random, who: str, line: str) -> str:
    """German dialogue: „Ich helfe dir“, sagte Max. / Max rief: „Komm schnell!“"""
    if r.random() < 0.2:
        return f"{who} {'fragte' if line.endswith('?') else r.choice(('sagte', 'rief'))}: „{line}“"
    end = line[-1]
    if end == "?":
        verb = "fragte"
    elif end == "!":
        verb = r.choice(("rief", "sagte", "rief"))
    else:
        verb = r.choice(("sagte", "sagte", "sagte", "flüsterte"))
        line = line[:-1]
    return f"„{line}“, {verb} {who}."


def _de_intro(r: random.Random, c: dict[str, str]) -> list[str]:
    first = r.choice(_v(
        "Es war einmal {kind} namens {H}.|{H} war {kind}, {der_kind} {home} wohnte."
        "|Es war einmal {kind}. {Er} hieß {H}."
    ))
    second = r.choice(_v("{Er} {fv} gern {fr}.|Jeden Tag {fv} {H} {fr}.|Am liebsten {fv} {H} {fr}."))
    return [first.format_map(c), second.format_map(c)]


def _de_lost(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _de_intro(r, c)
    s.append(r.choice(_v("{Er} hatte {ein_O}.|{H} hatte {ein_O}, den {er} sehr mochte.")).format_map(c)
             if c["ein_O"].startswith("einen") else r.choice(_v("{Er} hatte {ein_O}.|Zum Geburtstag hatte {H} {ein_O} bekommen."))
             .format_map(c))
    s.append("{T} nahm {H} {den_O} mit {dest}.".format_map(c))
    s.append(r.choice(_DE_WEATHER))
    s.append(r.choice(_v("{Er} spielte den ganzen Tag {loc}.|{Er} rannte und lachte und hatte viel Spaß.")).format_map(c))
    s.append(r.choice(_v("Als {er} nach Hause gehen wollte, war {der_O} weg!|Doch als {er} wieder nachsah, war {der_O} verschwunden."))
             .format_map(c))
    s.append("{H} suchte überall, aber {er} konnte {den_O} nicht finden. {Er} war traurig und fing an zu weinen.".format_map(c))
    s.append("\n")
    helper = c["F"] if r.random() < 0.6 else c["M"]
    if helper == c["F"]:
        s.append("Da kam {F} vorbei.".format_map(c))
    s.append(_de_say(r, helper, r.choice(_v("Warum weinst du, {H}?|Was ist los, {H}?")).format_map(c)))
    s.append(_de_say(r, c["H"], r.choice(_v("Ich habe {meinen_O} verloren.|Ich kann {meinen_O} nicht finden!")).format_map(c)))
    s.append(_de_say(r, helper, r.choice(_v("Keine Sorge. Ich helfe dir suchen.|Wir finden {O_pro} bestimmt. Komm mit!"))
                     .format_map(c)))
    s.append("\n")
    spots = r.sample(_DE_SPOTS, _count(r, 0.7, 9) + 1)
    s.extend(f"Sie suchten {spot}." for spot in spots[:-1])
    s.append(f"Dann sah {helper} etwas {spots[-1]}.")
    s.append("Da war {der_O}!".format_map(c))
    s.append(f"{c['H']} war so glücklich. {c['Er']} umarmte {helper}.")
    s.append(_de_say(r, c["H"], r.choice(_v("Danke, dass du mir geholfen hast!|Vielen Dank!|Du bist die Beste!"
                                            if helper == "Mama" else "Danke, dass du mir geholfen hast!|Vielen Dank!"))))
    s.append(r.choice(_v("Von da an passte {H} immer gut auf {seinen_O} auf.|{H} hatte gelernt, dass Freunde einander helfen."))
             .format_map(c))
    return s


def _de_share(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _de_intro(r, c)
    s.append("{Er} hatte {ein_O} und spielte jeden Tag damit.".format_map(c))
    s.append("{T} kam {F} vorbei.".format_map(c))
    s.append("\n")
    s.append(_de_say(r, c["F"], r.choice(_v("Darf ich auch mit {deinem_O} spielen?|Können wir zusammen spielen?")).format_map(c)))
    s.append(_de_say(r, c["H"], r.choice(_v("Nein! {der_O} gehört mir!|Nein, ich will allein spielen.")).format_map(
        {**c, "der_O": _cap(c["der_O"])})))
    s.append(r.choice(_v("{F} war traurig und ging weg.|{F} sah auf den Boden und sagte nichts.")).format_map(c))
    s.append("\n")
    s.append(r.choice(_v("Bald machte das Spielen keinen Spaß mehr.|Allein zu spielen war langweilig.")))
    s.append("{H} dachte an {F}.".format_map(c))
    s.append("{Er} lief zu {F} und sagte: „Es tut mir leid. Lass uns zusammen spielen.“".format_map(c))
    s.append(r.choice(_v("{F} lächelte.|{F} freute sich sehr.")).format_map(c))
    s.extend(_de_play_list(r))
    s.append("Sie spielten zusammen, bis die Sonne unterging.")
    s.append(r.choice(_v("{H} hatte gelernt, dass Teilen alle glücklich macht.|Von da an waren {H} und {F} beste {friends}."))
             .format_map(c))
    return s


_DE_RESCUES = (  # (animal, gender, trouble, rescue, thanks)
    ("Kätzchen", "n", "saß hoch oben in einem Baum fest", "{H} kletterte langsam hinauf und trug das Kätzchen herunter.",
     "Das Kätzchen schnurrte und rieb seinen Kopf an {Hs} Hand."),
    ("Vogel", "m", "hatte einen verletzten Flügel", "{H} legte den Vogel in eine weiche Kiste und gab ihm Wasser.",
     "Ein paar Tage später konnte der Vogel wieder fliegen."),
    ("Entenküken", "n", "hatte seine Mutter verloren", "{H} brachte das Entenküken zum Teich, wo seine Mutter schon wartete.",
     "Die Entenmutter rief laut: „Quak!“ Das klang wie ein Dankeschön."),
    ("Hündchen", "n", "steckte im Schlamm fest", "{H} zog das Hündchen heraus und wusch ihm die Pfoten.",
     "Das Hündchen wedelte fröhlich mit dem Schwanz."),
    ("Igel", "m", "hatte sich in einem Netz verfangen", "{H} schnitt das Netz vorsichtig auf.",
     "Der Igel schnupperte an {Hs} Schuh und lief davon."),
    ("Häschen", "n", "saß im Zaun fest", "{H} bog den Draht auseinander, damit das Häschen hinaus konnte.",
     "Das Häschen hüpfte dreimal um {ihn} herum und verschwand im Gras."),
)


def _de_rescue(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _de_intro(r, c)
    s.append("{T} ging {H} {loc} spazieren.".format_map(c))
    s.append(r.choice(_DE_WEATHER))
    animal, g, trouble, rescue, thanks = r.choice(_DE_RESCUES)
    s.append(r.choice(_v("Plötzlich hörte {er} ein leises Geräusch.|Da hörte {er}, wie jemand weinte.")).format_map(c))
    s.append(f"Es war {_np(animal, g, 'nom', 'ein', 'klein')}. {_cap(_np(animal, g, 'nom'))} {trouble}.")
    s.append("\n")
    s.append(_de_say(r, c["H"], f"Hab keine Angst, {_np(animal, g, 'nom', '', 'klein')}. Ich helfe dir."))
    s.append(rescue.format_map(c))
    s.append(thanks.format_map(c))
    s.append("\n")
    s.append(r.choice(_v("{H} war sehr glücklich.|{H} lächelte den ganzen Weg nach Hause.")).format_map(c))
    s.append(f"Zu Hause erzählte {c['er']} {c['seinem_M']} vom {animal}.")
    s.append(_de_say(r, c["M"], r.choice(_v("Du hast ein gutes Herz, {H}.|Ich bin stolz auf dich.")).format_map(c)))
    return s


_DE_FEARS = (  # (fear, scene, brave act)
    ("vor der Dunkelheit", "Abends wollte {er} nicht, dass {M} das Licht ausmachte.",
     "{Er} schloss die Augen und zählte im Dunkeln bis zehn."),
    ("vor dem Gewitter", "Wenn es donnerte, versteckte {er} sich unter {seiner_Decke}.",
     "{Er} sah aus dem Fenster und hörte dem Donner zu."),
    ("vor der großen Rutsche", "Immer wenn {er} die große Rutsche sah, wurden {seine_Knie} weich.",
     "{Er} kletterte die Leiter hinauf, setzte sich hin und rutschte ganz nach unten."),
    ("vor dem Wasser", "{Er} ging nie mit den anderen Kindern in den See.",
     "{Er} ging ins Wasser, erst mit einem Fuß und dann mit dem anderen."),
    ("vor dem großen Hund von nebenan", "Wenn der Hund bellte, rannte {er} immer ins Haus.",
     "{Er} streckte die Hand aus, und der große Hund leckte sie ab."),
)


def _de_fear(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _de_intro(r, c)
    fear, scene, act = r.choice(_DE_FEARS)
    s.append(f"Aber {c['H']} hatte Angst {fear}.")
    s.append(scene.format_map(c))
    s.append("\n")
    s.append(_de_say(r, c["H"], r.choice(_v("Ich habe Angst.|Ich kann das nicht!"))))
    s.append("{Sein_M} setzte sich neben {ihn}.".format_map(c))
    s.append(_de_say(r, c["M"], r.choice(_v("Es ist in Ordnung, Angst zu haben.|Du bist mutiger, als du denkst."
                                            "|Ich bin ganz nah bei dir."))))
    s.append("{H} atmete tief ein.".format_map(c))
    s.append(act.format_map(c))
    s.append(r.choice(_v("Es war gar nicht so schlimm.|Es machte sogar ein bisschen Spaß.")))
    s.append("\n")
    s.append(_de_say(r, c["H"], r.choice(_v("Ich habe es geschafft!|Schau mal, ich bin mutig!"))))
    s.append("{Sein_M} lächelte, und {H} war stolz.".format_map(c))
    s.append(f"Jetzt hat {c['H']} keine Angst mehr {fear}.")
    return s


_DE_PROJECTS = (  # (goal, step, mishap, result)
    ("einen Kuchen backen", "Sie mischten Mehl, Eier und Zucker in einer großen Schüssel.",
     "Aber {H} ließ die Schüssel fallen, und das Mehl flog durch die ganze Küche.", "Der Kuchen war weich und süß."),
    ("eine Sandburg bauen", "Sie gruben im Sand und bauten hohe Türme.",
     "Doch dann kam eine große Welle und spülte die Burg weg.", "Die neue Burg war sogar größer als die erste."),
    ("eine Karte für Oma basteln", "Sie schnitten Papier aus und malten ein großes rotes Herz.",
     "Aber {H} kippte Wasser über die Karte.", "Oma freute sich sehr und hängte die Karte an die Wand."),
    ("Blumen pflanzen", "Sie gruben kleine Löcher und legten Samen in die Erde.",
     "Aber ein hungriger Vogel kam und fraß einige Samen.", "Ein paar Wochen später war der Garten voller Blumen."),
    ("Plätzchen backen", "Sie machten einen Teig und stachen kleine Sterne aus.",
     "Aber die ersten Plätzchen wurden im Ofen zu dunkel.", "Die Plätzchen rochen so gut, dass alle in die Küche kamen."),
)


def _de_project(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _de_intro(r, c)
    goal, step, mishap, result = r.choice(_DE_PROJECTS)
    s.append(f"{c['T']} wollten {c['H']} und {c['sein_M']} {goal}.")
    s.append(step)
    s.append(mishap.format_map(c))
    s.append("{H} war traurig.".format_map(c))
    s.append("\n")
    s.append(_de_say(r, c["M"], r.choice(_v("Das macht nichts. Wir versuchen es noch einmal.|Gib nicht auf!"))))
    s.append("Also versuchten sie es noch einmal, ganz langsam und vorsichtig.")
    s.append(result)
    s.append(_de_say(r, c["H"], r.choice(_v("Wir haben es geschafft!|Das ist der schönste Tag überhaupt!"))))
    s.append(r.choice(_v("{H} und {sein_M} lachten zusammen.|{H} hatte gelernt, dass man nicht aufgeben darf."))
             .format_map(c))
    return s


_DE_OUTINGS = (  # (where to, where, what they saw as "indefinite/definite" accusative pairs)
    ("in den Zoo", "im Zoo", ("eine große Giraffe/die große Giraffe", "zwei Löwen/die zwei Löwen",
                              "einen großen Elefanten/den großen Elefanten", "lustige Affen/die lustigen Affen",
                              "einen müden Bären/den müden Bären", "bunte Papageien/die bunten Papageien")),
    ("an den Strand", "am Strand", ("kleine Krebse/die kleinen Krebse", "weiße Boote/die weißen Boote",
                                    "große Wellen/die großen Wellen", "einen Seestern/den Seestern",
                                    "schöne Muscheln/die schönen Muscheln", "laute Möwen/die lauten Möwen")),
    ("auf den Bauernhof", "auf dem Bauernhof", ("dicke Schweine/die dicken Schweine", "eine braune Kuh/die braune Kuh",
                                                "kleine Küken/die kleinen Küken", "ein weißes Pferd/das weiße Pferd",
                                                "drei Schafe/die drei Schafe", "einen roten Traktor/den roten Traktor")),
    ("in den Wald", "im Wald", ("hohe Bäume/die hohen Bäume", "ein kleines Reh/das kleine Reh",
                                "rote Pilze/die roten Pilze", "ein flinkes Eichhörnchen/das flinke Eichhörnchen",
                                "eine stille Eule/die stille Eule", "einen kleinen Bach/den kleinen Bach")),
)


def _de_outing(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _de_intro(r, c)
    dest, loc, seen = r.choice(_DE_OUTINGS)
    things = [x.split("/") for x in r.sample(seen, _count(r, 0.7, 5) + 1)]
    a = things[0]
    s.append(f"{c['T']} fuhr {c['H']} mit {c['seine_Familie']} {dest}.")
    s.append(r.choice(_DE_WEATHER))
    s.append(f"Sie sahen {', '.join(t[0] for t in things[:-1])} und {things[-1][0]}.")
    s.append(f"{c['H']} mochte {a[1]} am liebsten.")
    s.append(_de_say(r, c["H"], r.choice(_v("Können wir den ganzen Tag hierbleiben?|Das ist so schön hier!"))))
    s.append("\n")
    s.append("Dann wurde der Himmel grau, und es fing an zu regnen.")
    s.append(r.choice(_v("Sie liefen zum Auto und lachten.|Sie gingen unter einem großen Schirm nach Hause.")))
    s.append(f"Zu Hause kochte {c['sein_M']} eine warme Suppe.")
    s.append(f"In der Nacht träumte {c['H']} vom schönen Tag {loc}.")
    return s


_DE_FINDS = (  # (thing: accusative, what the hero does, what happens)
    ("eine kleine Holzkiste", "{Er} öffnete die Kiste langsam.", "Darin lag ein Zettel. Darauf stand: Sei freundlich zu allen."),
    ("eine alte Karte", "{Er} sah sich die Karte lange an.", "Die Karte zeigte einen Weg zu einem großen Baum mit einem roten Band."),
    ("einen glänzenden Schlüssel", "{Er} hob den Schlüssel auf.", "Der Schlüssel passte in eine winzige Tür unten in einem alten Baum."),
    ("ein großes goldenes Ei", "{Er} berührte das Ei ganz sanft.", "Knack! Ein kleiner gelber Vogel schlüpfte heraus und rief: „Piep!“"),
    ("einen leuchtenden Stein", "{Er} nahm den Stein in die Hand.", "Der Stein war warm und leuchtete immer heller."),
)


def _de_explore(r: random.Random, c: dict[str, str]) -> list[str]:
    s = _de_intro(r, c)
    s.append("{H} war sehr neugierig und wollte immer alles wissen.".format_map(c))
    s.append("{T} ging {H} {dest}.".format_map(c))
    thing, act, result = r.choice(_DE_FINDS)
    s.append(f"{_cap(r.choice(_DE_SPOTS))} fand {c['er']} {thing}.")
    s.append(_de_say(r, c["H"], r.choice(_v("Was ist das denn?|Wow, schau dir das an!"))))
    s.append(act.format_map(c))
    s.append(result)
    s.append("\n")
    s.append(f"{c['H']} rannte nach Hause, um es {c['seinem_M']} zu erzählen.")
    s.append(_de_say(r, c["H"], f"{c['M']}, schau mal, was ich gefunden habe!"))
    s.append(_de_say(r, c["M"], r.choice(_v("Wie spannend!|Du bist ja ein echter {Entdecker}, {H}!"
                                            if c["Entdecker"] == "Entdecker" else
                                            "Wie spannend!|Du bist ja eine echte {Entdecker}, {H}!")).format_map(c)))
    s.append(f"In der Nacht träumte {c['H']} von neuen Abenteuern.")
    return s


_DE_ARCS = (_de_lost, _de_share, _de_rescue, _de_fear, _de_project, _de_outing, _de_explore)


def _german_story(r: random.Random) -> str:
    c = _de_cast(r)
    s = r.choice(_DE_ARCS)(r, c)
    if r.random() < 0.15:
        s.append("Ende.")
    return _join(s)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def english_stories(n_bytes: int = 2_200_000, seed: int = 0) -> str:
    """At least ``n_bytes`` UTF-8 bytes of generated English stories, separated by a blank line.

    The same ``seed`` gives the same text on every machine; no story occurs twice.
    """
    _check_size(n_bytes, seed)
    return _generate(_english_story, n_bytes, seed)


@functools.lru_cache(maxsize=8)
def german_stories(n_bytes: int = 600_000, seed: int = 0) -> str:
    """At least ``n_bytes`` UTF-8 bytes of generated German stories (a second domain for fine-tuning)."""
    _check_size(n_bytes, seed)
    return _generate(_german_story, n_bytes, seed)


@dataclass(frozen=True)
class Splits:
    """Train / validation / test text, cut at story boundaries so that no story is in two of them."""

    train: str
    val: str
    test: str


def split_text(text: str, val_fraction: float = 0.05, test_fraction: float = 0.05) -> Splits:
    """Split ``text`` into train / val / test at story boundaries (blank lines; else single lines).

    The last stories go to the test split, the ones before them to validation: for generated or
    shuffled text this is as good as a random split, and it keeps each split readable.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    sep = STORY_SEPARATOR
    pieces = [p for p in text.strip().split(sep) if p.strip()]
    if len(pieces) < 3:  # no blank lines: fall back to lines
        sep = "\n"
        pieces = [p for p in text.strip().split(sep) if p.strip()]
    if len(pieces) < 3:
        raise ValueError(f"text must contain at least 3 stories or lines to split, got {len(pieces)}")
    n = len(pieces)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"text has only {n} stories: too few for val_fraction={val_fraction}, "
                         f"test_fraction={test_fraction}")
    return Splits(
        train=sep.join(pieces[:n_train]),
        val=sep.join(pieces[n_train:n_train + n_val]),
        test=sep.join(pieces[n_train + n_val:]),
    )


@functools.lru_cache(maxsize=4)
def load_corpus(name: str = "english", seed: int = 0) -> Splits:
    """The course corpus ``name`` ("english" or "german") split 90 / 5 / 5 into train / val / test."""
    if name == "english":
        return split_text(english_stories(seed=seed))
    if name == "german":
        return split_text(german_stories(seed=seed))
    raise ValueError(f"name must be one of {', '.join(CORPORA)}, got {name!r}")


def load_text(path: str | Path) -> str:
    """Read a learner's own UTF-8 text file (a BOM is dropped, Windows line ends become "\\n")."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no file at {str(p)!r} (working directory: {Path.cwd()})")
    if not p.is_file():
        raise ValueError(f"path must be a text file, but {str(p)!r} is a directory or special file")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{str(p)!r} is not valid UTF-8 (bad byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8 and try again"
        ) from err
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ValueError(f"{str(p)!r} is empty (it holds no text besides whitespace)")
    return text
