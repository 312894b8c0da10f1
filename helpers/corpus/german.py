"""The German story grammar (a second domain for fine-tuning)."""

from __future__ import annotations

import random

from helpers.corpus.grammar import _cap, _count, _join, _v

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


