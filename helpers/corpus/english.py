"""The English story grammar (the base model's pretraining data)."""

from __future__ import annotations

import random

from helpers.corpus.grammar import _cap, _count, _join, _v

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


