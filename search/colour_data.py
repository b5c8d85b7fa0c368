"""The colour vocabulary behind :mod:`search.colour`: names, swatches, Polish stems and context rules.

Plain data, kept apart from the code. Every name is matched on :func:`search.analysis.fold`-ed
text, so ``"żółta"`` and ``"zolta"`` are one key, and words are split on anything that is not a
letter or digit, so ``"navy-blue"`` and ``"navy blue"`` are one key.

How a surface form is written in :class:`ColourEntry`:

* ``english``: English names and phrases as shoppers type them. ``grey``/``gray``,
  ``colour``/``color`` and ``coloured``/``colored`` variants and the closed compound of a
  two-word phrase (``navyblue``) are generated.
* ``polish``: Polish adjective stems (``"czarn"``, ``"niebiesk"``); every case, gender and number
  is generated from :data:`POLISH_HARD_SUFFIXES` (stems ending in ``k``/``g`` take
  :data:`POLISH_SOFT_SUFFIXES`). A stem of two words (``"neonow zielon"``) inflects both words
  alike (``"neonowa zielona"``).
* ``polish_words``: Polish forms written out (nouns and noun phrases such as ``"złamana biel"``).

A form may start with a marker saying when a query word counts as a colour (see
:func:`search.colour.spot_colours`):

* no marker: *plain*, a colour wherever it appears unless it forms a known non-colour compound
  (:data:`EXCEPTIONS`: ``"black pepper"``, ``"czerwone wino"``);
* ``?``: *ambiguous*, also a thing, a material or a flavour (``orange``, ``gold``, ``coffee``,
  ``miętowy``); a colour only when it modifies another word of the query;
* ``!``: *label*, a catalogue label that is rarely meant as a colour in free text (``skin``,
  ``multi``, ``denim``); a colour in a query only next to a cue such as ``colour``/``kolor``.

sRGB swatches: CSS named colours where one fits, otherwise the Wikipedia colour articles or a
common fashion reference (marked ``approx.``). Basic names share the values of the demo catalogue
(:mod:`indexer.demo`: crimson for red, forestgreen for green, CSS gold for yellow, saddlebrown
for brown) so names and drawn swatches agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ColourEntry:
    """One named colour of the vocabulary.

    Attributes:
        name: Canonical English name (``"navy"``), lower case.
        family: One of the values of :class:`search.colour.Family`.
        hex: sRGB swatch, ``"#RRGGBB"``.
        english: English forms, optionally marked ``?`` (ambiguous) or ``!`` (label).
        polish: Polish adjective stems, inflected by suffix table; may be marked.
        polish_words: Polish forms written out (nouns, noun phrases); may be marked.
    """

    name: str
    family: str
    hex: str
    english: tuple[str, ...] = ()
    polish: tuple[str, ...] = ()
    polish_words: tuple[str, ...] = ()


E = ColourEntry

#: Endings of a hard-stem Polish adjective (``czarn-y``): every gender, case and number a shopper
#: types (folded, so ``ą`` is ``a``), plus the ``-o`` form that starts a compound
#: (``czarno-biały``). The virile plural (``czarni``) is left out: colours describe things.
POLISH_HARD_SUFFIXES: tuple[str, ...] = (
    "y", "a", "e", "ego", "ej", "emu", "ym", "ych", "ymi", "o",
)  # fmt: skip

#: Endings of a soft/velar-stem Polish adjective (``niebiesk-i``).
POLISH_SOFT_SUFFIXES: tuple[str, ...] = (
    "i", "a", "ie", "iego", "iej", "iemu", "im", "ich", "imi", "o",
)  # fmt: skip

ENTRIES: tuple[ColourEntry, ...] = (
    # --- black -----------------------------------------------------------------------------
    E("black", "black", "#000000", ("black", "blacks", "jet black", "pitch black"), ("czarn",),
      ("czerń", "czerni", "czernią")),
    # --- white -----------------------------------------------------------------------------
    E("white", "white", "#FFFFFF",
      ("white", "whites", "pure white", "optic white", "optical white", "bright white",
       "whitish"),
      ("biał",), ("biel", "bieli", "bielą")),
    E("off white", "white", "#FAF9F6", ("off white", "eggshell"), (),  # approx.
      ("złamana biel", "złamanej bieli", "złamaną biel", "złamaną bielą")),
    E("ivory", "white", "#FFFFF0", ("ivory",), (),
      ("kość słoniowa", "kości słoniowej", "kość słoniową", "kością słoniową", "ivory")),
    # --- grey ------------------------------------------------------------------------------
    E("grey", "grey", "#808080", ("grey", "greys", "mid grey", "medium grey", "greyish"),
      ("szar",), ("szarość", "szarości", "szarością")),
    E("light grey", "grey", "#D3D3D3", ("light grey", "pale grey", "silver grey"),
      ("jasnoszar",)),
    # CSS darkgray (#A9A9A9) is lighter than gray; dimgray is what shoppers mean.
    E("dark grey", "grey", "#696969", ("dark grey", "deep grey"), ("ciemnoszar",)),
    E("charcoal", "grey", "#36454F", ("?charcoal", "charcoal grey", "?graphite", "graphite grey"),
      ("grafitow",)),
    E("anthracite", "grey", "#293133", ("anthracite", "anthracite grey"),  # RAL 7016
      ("antracytow",), ("antracyt",)),
    E("grey melange", "grey", "#A3A3A3",  # approx.
      ("grey melange", "melange grey", "heather grey", "grey heather", "grey marl", "marl grey"),
      (), ("szary melanż", "szarego melanżu", "szarym melanżem", "szary melanz")),
    E("ash grey", "grey", "#B2BEB5", ("ash grey",), ("popielat",)),
    E("slate grey", "grey", "#708090", ("slate grey", "?slate")),
    # --- red -------------------------------------------------------------------------------
    E("red", "red", "#DC143C", ("red", "reds", "reddish", "crimson"),
      ("czerwon", "karmazynow"), ("czerwień", "czerwieni", "czerwienią")),
    E("dark red", "red", "#8B0000", ("dark red", "deep red", "blood red"), ("ciemnoczerwon",)),
    E("scarlet", "red", "#FF2400", ("scarlet",), ("szkarłatn",), ("szkarłat",)),
    E("cherry", "red", "#DE3163", ("?cherry", "cherry red"), ("?wiśniow",)),
    E("burgundy", "red", "#800020", ("burgundy", "?bordeaux"), ("bordow",), ("bordo",)),
    E("maroon", "red", "#800000", ("maroon",)),
    E("wine", "red", "#722F37", ("?wine", "wine red")),
    E("brick red", "red", "#CB4154", ("brick red", "?brick"), ("ceglast",)),
    E("ruby", "red", "#E0115F", ("?ruby", "ruby red"), ("?rubinow",)),
    # --- pink ------------------------------------------------------------------------------
    E("pink", "pink", "#FFC0CB", ("pink", "pinks", "pinkish"), ("różow",)),
    E("light pink", "pink", "#FFB6C1", ("light pink", "pale pink"), ("jasnoróżow",)),
    E("hot pink", "pink", "#FF69B4", ("hot pink", "neon pink", "shocking pink"), (),
      ("neonowy róż", "neonowego różu", "neonowym różem")),
    E("baby pink", "pink", "#F4C2C2", ("baby pink", "powder pink", "pastel pink"),
      ("?pudrow", "pudroworóżow"), ("pudrowy róż", "pudrowego różu", "pudrowym różem")),
    E("dusty pink", "pink", "#D8A7B1", ("dusty pink", "dusty rose"),  # approx.
      ("brudnoróżow",), ("brudny róż", "brudnego różu", "brudnym różem", "brudnym różu")),
    E("rose", "pink", "#C08081", ("?rose", "old rose", "rose pink")),  # Wikipedia "old rose"
    E("magenta", "pink", "#FF00FF", ("magenta", "fuchsia", "fuschia", "fuchsia pink"),
      ("fuksjow",), ("magenta", "fuksja", "fuksji")),
    E("raspberry", "pink", "#E30B5C", ("?raspberry",), ("?malinow",)),
    E("salmon", "pink", "#FA8072", ("?salmon", "salmon pink"), ("?łososiow",)),
    E("blush", "pink", "#DE5D83", ("?blush", "blush pink")),
    # --- orange ----------------------------------------------------------------------------
    E("orange", "orange", "#FFA500", ("?orange", "orangey", "orangish"), ("pomarańczow",)),
    E("dark orange", "orange", "#FF8C00", ("dark orange",), ("ciemnopomarańczow",)),
    E("burnt orange", "orange", "#CC5500", ("burnt orange",)),
    E("coral", "orange", "#FF7F50", ("coral",), ("koralow",)),
    E("peach", "orange", "#FFE5B4", ("?peach",), ("?brzoskwiniow",)),
    E("apricot", "orange", "#FBCEB1", ("?apricot",), ("?morelow",)),
    E("rust", "orange", "#B7410E", ("?rust", "rust orange", "rust brown"), ("rdzaw",)),
    E("terracotta", "orange", "#E2725B", ("?terracotta", "?terra cotta"), ("?terakotow",),
      ("?terakota",)),
    E("tangerine", "orange", "#F28500", ("?tangerine",), ("?mandarynkow",)),
    E("amber", "orange", "#FFBF00", ("?amber",), ("?bursztynow",)),
    # --- yellow ----------------------------------------------------------------------------
    E("yellow", "yellow", "#FFD700", ("yellow", "yellows", "yellowish"), ("żółt",)),
    E("light yellow", "yellow", "#FFFFE0", ("light yellow", "pale yellow"), ("jasnożółt",)),
    E("mustard", "yellow", "#E1AD01", ("?mustard", "mustard yellow"), ("musztardow",)),
    E("lemon", "yellow", "#FFF700", ("?lemon", "lemon yellow"), ("?cytrynow",)),
    E("canary yellow", "yellow", "#FFEF00", ("canary yellow", "?canary"), ("kanarkow",)),
    # --- green -----------------------------------------------------------------------------
    E("green", "green", "#228B22", ("green", "?greens", "greenish"), ("zielon",),
      ("zieleń", "zieleni", "zielenią")),
    E("light green", "green", "#90EE90", ("light green", "pale green"), ("jasnozielon",)),
    E("dark green", "green", "#006400", ("dark green", "deep green"), ("ciemnozielon",)),
    E("bottle green", "green", "#006A4E", ("bottle green",), ("butelkowozielon",),
      ("butelkowa zieleń", "butelkowej zieleni", "butelkową zieleń", "butelkową zielenią")),
    E("forest green", "green", "#014421", ("forest green", "hunter green")),
    E("army green", "green", "#4B5320", ("army green", "military green"), (),
      ("wojskowa zieleń", "wojskowej zieleni", "wojskową zielenią")),
    E("olive", "green", "#808000", ("?olive", "olive green"), ("oliwkow",)),
    E("lime green", "green", "#32CD32", ("?lime", "lime green"), ("?limonkow",)),
    E("fluorescent green", "green", "#39FF14",
      ("fluorescent green", "neon green", "fluo green", "fluoro green"), ("neonow zielon",),
      ("neonowa zieleń", "neonowej zieleni", "neonową zielenią")),
    E("mint", "green", "#98FF98", ("?mint", "mint green"), ("?miętow",)),
    E("sea green", "green", "#2E8B57", ("sea green",), (),
      ("morska zieleń", "morskiej zieleni", "morską zielenią")),
    E("emerald", "green", "#50C878", ("?emerald", "emerald green"), ("szmaragdow",)),
    E("sage", "green", "#9CAF88", ("?sage", "sage green"), ("?szałwiow",)),  # approx.
    E("jade", "green", "#00A86B", ("?jade", "jade green")),
    # --- blue ------------------------------------------------------------------------------
    E("blue", "blue", "#0000FF", ("blue", "?blues", "bluish", "blueish"), ("niebiesk",)),
    E("light blue", "blue", "#ADD8E6", ("light blue", "pale blue"), ("jasnoniebiesk",)),
    E("dark blue", "blue", "#00008B", ("dark blue", "deep blue"), ("ciemnoniebiesk",)),
    E("navy", "blue", "#000080", ("navy", "navy blue"), ("granatow",),
      ("?granat", "?granatu", "?granatem")),
    E("midnight blue", "blue", "#191970", ("midnight blue",)),
    E("sky blue", "blue", "#87CEEB", ("sky blue",), ("błękitn",), ("błękit", "błękitu")),
    E("baby blue", "blue", "#89CFF0", ("baby blue", "powder blue", "pastel blue")),
    E("royal blue", "blue", "#4169E1", ("royal blue",)),
    E("cobalt", "blue", "#0047AB", ("cobalt", "cobalt blue"), ("kobaltow",)),
    E("cornflower blue", "blue", "#6495ED", ("cornflower blue", "?cornflower"), ("chabrow",)),
    E("denim", "blue", "#1560BD", ("!denim", "denim blue")),
    # CSS indigo (#4B0082) is a violet; shoppers mean the dye of jeans (Material indigo 800).
    E("indigo", "blue", "#283593", ("indigo",), (), ("indygo",)),
    E("petrol", "blue", "#005F6A", ("!petrol", "petrol blue"), ("petrolow",)),  # approx.
    E("steel blue", "blue", "#4682B4", ("steel blue",)),
    E("sapphire", "blue", "#0F52BA", ("?sapphire", "sapphire blue"), ("szafirow",)),
    E("teal", "blue", "#008080", ("teal", "teal blue", "teal green"), ("?morsk",)),
    E("turquoise", "blue", "#40E0D0", ("turquoise", "turquoise blue", "turquoise green"),
      ("turkusow",), ("turkus", "turkusu")),
    E("aqua", "blue", "#00FFFF", ("?aqua", "aqua blue", "cyan"), (), ("cyjan",)),
    E("aquamarine", "blue", "#7FFFD4", ("aquamarine",), ("akwamarynow",)),
    # --- purple ----------------------------------------------------------------------------
    E("purple", "purple", "#800080", ("purple", "purples", "purplish"),
      ("fioletow", "purpurow"), ("fiolet", "fioletu")),
    E("dark purple", "purple", "#301934", ("dark purple", "deep purple"), ("ciemnofioletow",)),
    # Wikipedia's spectral violet (#7F00FF) sits 9 ΔE00 from pure blue; garments sold as violet
    # are a blue-leaning purple (Pantone 18-3838 Ultra Violet is #5F4B8B).
    E("violet", "purple", "#6B3FA0", ("violet",)),
    # CSS lavender (#E6E6FA) is nearly white; this is Wikipedia's floral lavender.
    E("lavender", "purple", "#B57EDC", ("?lavender",), ("?lawendow",)),
    E("lilac", "purple", "#C8A2C8", ("lilac",), ("liliow",)),
    E("plum", "purple", "#8E4585", ("?plum",), ("?śliwkow",)),
    E("mauve", "purple", "#B784A7", ("mauve",), ("wrzosow",)),  # Wikipedia "opera mauve"
    E("amethyst", "purple", "#9966CC", ("?amethyst",), ("ametystow",)),
    # --- brown -----------------------------------------------------------------------------
    E("brown", "brown", "#8B4513", ("brown", "browns", "brownish"), ("brązow",)),
    E("light brown", "brown", "#B5651D", ("light brown",), ("jasnobrązow",)),
    E("dark brown", "brown", "#654321", ("dark brown", "deep brown"), ("ciemnobrązow",)),
    E("chocolate", "brown", "#7B3F00", ("?chocolate", "chocolate brown"), ("?czekoladow",)),
    E("coffee brown", "brown", "#6F4E37", ("?coffee", "coffee brown"), ("?kawow",)),
    E("tan", "brown", "#D2B48C", ("?tan",)),
    E("camel", "brown", "#C19A6B", ("?camel",)),
    E("cognac", "brown", "#9A463D", ("?cognac",), ("?koniakow",)),  # approx.
    E("chestnut", "brown", "#954535", ("?chestnut",), ("kasztanow",)),
    E("taupe", "brown", "#483C32", ("taupe",), (), ("taupe",)),
    E("mushroom brown", "brown", "#9F8C7C", ("mushroom brown", "?mushroom")),  # approx.
    # --- beige -----------------------------------------------------------------------------
    E("beige", "beige", "#F5F5DC", ("beige", "beiges"), ("beżow",)),
    E("cream", "beige", "#FFFDD0", ("?cream",), ("?kremow",)),
    # Wikipedia's ecru (#C2B280) is a tan; fashion ecru is unbleached off-white.
    E("ecru", "beige", "#F0EAD6", ("ecru",), (), ("ecru",)),
    E("sand", "beige", "#C2B280", ("?sand", "sand beige"), ("piaskow",)),
    E("stone", "beige", "#B5AC9C", ("?stone", "stone beige"), ()),  # approx.
    E("champagne", "beige", "#F7E7CE", ("?champagne",), ("?szampańsk",)),
    E("nude", "beige", "#E3BC9A", ("nude",), ("cielist",), ("nude",)),  # approx.
    E("skin", "beige", "#E8BEAC", ("!skin", "skin tone", "skin colour"), ()),  # approx.
    # US khaki: a greyish beige. In Poland khaki leans olive; closeness to olive stays > 0.
    E("khaki", "beige", "#C3B091", ("khaki",), (), ("khaki",)),
    # --- metallic --------------------------------------------------------------------------
    E("silver", "metallic", "#C0C0C0", ("?silver", "silver tone", "silvery"), ("?srebrn",)),
    E("gold", "metallic", "#D4AF37", ("?gold", "?golden", "gold tone", "yellow gold"),
      ("?złot",)),
    E("rose gold", "metallic", "#B76E79", ("rose gold", "pink gold"), ("różowozłot",),
      ("różowe złoto", "różowego złota", "różowym złotem", "różowym złocie")),
    E("white gold", "metallic", "#E8E4DA", ("white gold",), (),  # approx.
      ("białe złoto", "białego złota", "białym złotem", "białym złocie")),
    E("platinum", "metallic", "#E5E4E2", ("?platinum",), ("?platynow",)),
    E("bronze", "metallic", "#CD7F32", ("?bronze",)),
    E("copper", "metallic", "#B87333", ("?copper",), ("?miedzian",)),
    E("steel", "metallic", "#71797E", ("?steel", "steel grey"), ("?stalow",)),
    E("gunmetal", "metallic", "#2A3439", ("gunmetal", "gun metal", "gunmetal grey")),
    E("metallic", "metallic", "#AAA9AD", ("metallic", "metalic"), ("metaliczn",)),
    # --- multi -----------------------------------------------------------------------------
    # The swatch is a placeholder mid grey: a mix of colours has no single coordinate, so
    # search.colour.closeness compares multi by family only.
    E("multi", "multi", "#808080",
      ("!multi", "multicolour", "multicoloured", "multi colour", "multi coloured",
       "multi colours", "many colours", "rainbow colours"),
      ("wielokolorow", "różnokolorow", "wielobarwn"), ()),
)  # fmt: skip

#: Colour modifiers: a modifier word followed by a colour gives a lighter/darker/paler/brighter
#: variant (``"dark mustard"``). Values: the canonical English modifier.
MODIFIERS_EN: dict[str, str] = {
    "light": "light", "pale": "pale", "pastel": "pale", "dark": "dark", "deep": "dark",
    "bright": "bright", "neon": "bright", "vivid": "bright", "fluorescent": "bright",
}  # fmt: skip

#: Polish modifier adjective stems (inflected like colours): ``jasna zieleń``, ``ciemny beż``.
MODIFIER_STEMS_PL: dict[str, str] = {
    "jasn": "light", "ciemn": "dark", "blad": "pale", "pastelow": "pale", "neonow": "bright",
    "intensywn": "bright",
}  # fmt: skip

#: Polish modifier prefixes of one-word compounds: ``jasnoniebieski``, ``ciemno-zielona``.
MODIFIER_PREFIXES_PL: dict[str, str] = {"jasno": "light", "ciemno": "dark", "blado": "pale"}

#: Words before a colour that say "this is a colour" (folded; one or two words).
CUES_BEFORE: frozenset[str] = frozenset(
    {"colour", "color", "kolor", "koloru", "kolorze", "w kolorze", "odcien", "w odcieniu"}
)

#: Words after a colour that say "this is a colour".
CUES_AFTER: frozenset[str] = frozenset(
    {
        "colour", "colours", "color", "colors", "coloured", "colored", "tone", "toned", "shade",
        "kolor", "koloru", "kolorze",
    }
)  # fmt: skip

#: Words between two colours that join them (``black and white``); dropped with them.
CONNECTORS: frozenset[str] = frozenset({"and", "or", "i", "lub", "albo", "oraz", "n"})

#: Known non-colour compounds, by canonical colour name: when the nearest non-stopword neighbour
#: of the colour word (either side) matches one of these, the word is not a colour. A pattern
#: ending in ``*`` matches by prefix (Polish inflection); otherwise the word itself or its
#: English plural (``+s``/``+es``) matches. Derived colours (``dark chocolate``) use their base.
EXCEPTIONS: dict[str, tuple[str, ...]] = {
    "black": (
        "pepper", "tea", "friday", "forest", "currant", "bean", "olive", "garlic", "widow",
        "decker", "ink", "toner", "cartridge", "out", "pudding", "seed", "label",
        "pieprz*", "herbat*", "porzeczk*", "piat*", "czosn*", "fasol*", "skrzynk*", "tusz*",
        "toner*", "kaw*", "oliwk*",
    ),
    "white": (
        "wine", "goods", "spirit", "noise", "chocolate", "rice", "bread", "sugar", "tea",
        "board", "out", "vinegar", "flour", "asparagus", "bean", "ink", "toner",
        "wino", "wina", "winem", "winie", "czekolad*", "ryz", "ryzu", "chleb*", "cukier*",
        "cukr*", "herbat*", "kielbas*", "szparag*", "fasol*", "ser", "sera", "serek", "serka",
        "serki", "ocet", "octu", "mak*", "tusz*",
    ),
    "red": (
        "wine", "onion", "pepper", "bull", "meat", "lentil", "currant", "cabbage", "bean",
        "wino", "wina", "winem", "winie", "cebul*", "porzeczk*", "papryk*", "fasol*",
        "soczewic*", "kapust*", "mies*",
    ),
    "pink": (
        "pepper", "salt", "grapefruit", "lady", "wino", "wina", "winem", "pieprz*", "sol",
        "soli", "grejpfrut*",
    ),
    "green": (
        "tea", "bean", "onion", "pea", "pepper", "olive", "smoothie", "house", "card", "energy",
        "herbat*", "groszek", "groszk*", "fasol*", "cebul*", "oliwk*", "papryk*", "ogork*",
        "ogorek",
    ),
    "blue": ("cheese", "tooth", "ink", "toner", "cartridge", "tusz*"),
    "yellow": (
        "pages", "ink", "toner", "cartridge", "fever", "ser", "sera", "serek", "serem", "febr*",
        "tusz*",
    ),
    "brown": (
        "rice", "sugar", "bread", "sauce", "ryz", "ryzu", "cukier*", "cukr*", "chleb*",
        "medal*",
    ),
    "grey": ("water", "mydl*"),
    "navy": ("old", "seal", "sok*", "owoc*", "pestk*"),
    "magenta": ("ink", "toner", "cartridge", "tusz*"),
    "aqua": ("shoe", "park", "aerobics", "fitness", "gym", "socks"),
    "orange": (
        "juice", "peel", "zest", "marmalade", "oil", "tree", "squash", "blossom", "chicken",
        "juicer", "squeezer", "cake", "slice", "sok*", "dzem*", "skork*", "olej*", "aromat*",
        "smak*", "herbat*", "marmolad*",
    ),
    "wine": (
        "glass", "rack", "bottle", "cooler", "fridge", "opener", "cellar", "gift", "stopper",
        "aerator", "decanter", "box", "chiller", "holder", "tasting", "club", "vinegar", "cork",
    ),
    "burgundy": ("glass", "wine"),
    "coffee brown": (
        "table", "maker", "machine", "mug", "cup", "bean", "grinder", "pot", "filter",
        "capsule", "pod", "press", "scoop", "cake", "bar", "station", "syrup", "tin", "jar",
        "stolik*", "stol", "stolu", "stoly", "stole", "lawa", "lawy", "lawe", "lawka", "lawki",
        "ekspres*", "likier*", "ziarn*", "mlynek", "mlynk*", "serwis*", "aromat*", "filizank*",
        "kubek", "kubk*",
    ),
    "olive": (
        "oil", "tree", "branch", "wood", "tapenade", "pit", "mydl*", "olej*", "oliw*", "krem*",
        "drewn*", "balsam*", "szampon*", "galaz*", "drzew*",
    ),
    "cream": (
        "cheese", "cracker", "puff", "soup", "liqueur", "tea", "charger", "whipper",
        "dispenser", "ice", "face", "hand", "body", "sun", "eye", "shaving", "night", "day",
        "sour", "whipped", "clotted", "heavy", "double", "ser", "sera", "serek", "serka",
        "serki", "zup*", "tort*",
    ),
    "sand": (
        "bag", "paper", "pit", "timer", "filter", "blaster", "blasting", "bucket", "castle",
        "toy", "filtr*", "worek", "work*",
    ),
    "stone": (
        "tile", "wall", "cladding", "veneer", "slab", "paver", "chips", "flooring", "floor",
        "sink", "basin", "bath", "countertop", "worktop", "fireplace", "wash", "washed",
        "effect", "fruit",
    ),
    "mint": (
        "sauce", "tea", "leaf", "leaves", "plant", "chocolate", "gum", "candy", "candies",
        "oil", "jelly", "condition", "herbat*", "gum*", "cukier*", "cukierk*", "olej*",
        "past*", "syrop*", "likier*", "czekolad*", "napar*", "aromat*", "smak*",
    ),
    "lime green": (
        "juice", "zest", "squeezer", "wedge", "scale", "plaster", "mortar", "wash", "tree",
        "cordial", "pickle", "leaf", "leaves", "powder", "render", "sok*", "smak*", "syrop*",
        "aromat*",
    ),
    "chocolate": (
        "bar", "cake", "chip", "box", "truffle", "fountain", "milk", "spread", "egg", "biscuit",
        "cookie", "mould", "mold", "fondue", "sauce", "coin", "dark", "tort*", "ciast*",
        "krem*", "baton*", "pralin*", "fontann*", "polew*", "smak*", "napoj*",
    ),
    "copper": (
        "pipe", "wire", "tube", "fitting", "tape", "sheet", "cable", "foil", "mesh", "elbow",
        "coupling", "rur*", "drut*", "przewod*", "kabel", "kabl*", "blach*", "tasm*", "kolank*",
    ),
    "gold": (
        "leaf", "bullion", "bar", "coin", "card", "class", "medal", "standard", "membership",
        "retriever", "syrup", "hour", "rybk*", "monet*", "sztabk*", "medal*", "raczk*",
    ),
    "silver": (
        "polish", "cleaner", "coin", "bar", "medal", "bullion", "wedding", "birch", "fish",
        "solder", "nitrate", "medal*", "monet*", "wesel*",
    ),
    "bronze": ("medal", "age"),
    "steel": (
        "toe", "toecap", "wool", "cable", "wire", "beam", "sheet", "tube", "pipe", "rod", "bar",
        "frame", "stainless", "carbon", "galvanised", "galvanized", "mild", "drum",
    ),
    "charcoal": (
        "bbq", "grill", "briquette", "lumpwood", "bag", "starter", "chimney", "pencil",
        "filter", "toothpaste", "mask", "soap", "tablet", "powder", "scrub", "lubricant",
        "grease", "smar*", "olowek", "olowk*",
    ),
    "rust": (
        "remover", "converter", "treatment", "inhibitor", "proof", "resistant", "primer",
        "anti", "spray", "stain",
    ),
    "salmon": (
        "fillet", "oil", "steak", "smoked", "roe", "food", "pate", "fishing", "fly", "lure",
        "rod", "past*", "filet*", "olej*", "karm*", "pasztet*",
    ),
    "peach": (
        "juice", "tree", "tea", "jam", "slice", "schnapps", "fruit", "sok*", "dzem*", "herbat*",
        "smak*", "kompot*", "drzew*", "nektar*",
    ),
    "apricot": (
        "jam", "kernel", "oil", "tree", "scrub", "dried", "dzem*", "olej*", "nalewk*", "drzew*",
        "pestk*",
    ),
    "plum": (
        "tree", "jam", "sauce", "wine", "tomato", "brandy", "dzem*", "powidl*", "sos*",
        "nalewk*", "drzew*", "kompot*", "ciast*",
    ),
    "cherry": (
        "tree", "tomato", "pie", "jam", "blossom", "wood", "pitter", "juice", "brandy",
        "picker", "cola", "liqueur", "sok*", "dzem*", "nalewk*", "drewn*", "drzew*", "kompot*",
        "likier*", "ciast*", "smak*", "konfitur*",
    ),
    "lemon": (
        "juice", "squeezer", "zest", "tree", "curd", "grass", "tea", "balm", "oil", "cake",
        "pepper", "drizzle", "sok*", "kwas*", "herbat*", "olej*", "smak*", "aromat*",
    ),
    "raspberry": (
        "pi", "jam", "leaf", "cane", "juice", "ketone", "sok*", "dzem*", "syrop*", "herbat*",
        "smak*", "nalewk*",
    ),
    "camel": ("hair", "milk", "ride", "toe"),
    "tan": (
        "through", "lotion", "spray", "accelerator", "mitt", "oil", "drops", "water", "mousse",
        "remover", "self", "fake", "line",
    ),
    "coral": ("reef", "fleece", "raf*"),
    "emerald": ("cut",),
    "sapphire": ("crystal", "glass"),
    "jade": ("roller", "plant"),
    "amber": ("light", "bead", "teething", "ale", "resin", "kwas*"),
    "champagne": (
        "glass", "flute", "bucket", "bottle", "saber", "sabre", "cooler", "stopper", "coupe",
        "kieliszek", "kieliszk*",
    ),
    "terracotta": ("pot", "planter", "tile", "pipe", "army", "warrior", "doniczk*", "plytk*"),
    "tangerine": ("juice", "tree", "sok*", "smak*"),
    "sage": ("leaf", "leaves", "plant", "tea", "oil", "seed", "stuffing", "herbat*", "olej*"),
    "lavender": (
        "oil", "plant", "bag", "sachet", "spray", "seed", "soap", "water", "essential", "olej*",
        "mydl*", "saszetk*", "woreczek", "woreczk*", "sadzonk*", "zapach*", "plyn*",
    ),
    "lilac": ("bush", "tree", "plant"),
    "violet": ("african", "plant", "seed"),
    "cobalt": ("drill", "bit", "battery"),
    "rose": (
        "bush", "plant", "seed", "petal", "water", "oil", "wine", "garden", "hip", "tea",
        "quartz", "print", "pattern", "bouquet", "fertiliser", "fertilizer", "food", "pruner",
        "cutter",
    ),
    "beige": ("tort*", "ciast*", "deser*", "spod"),
    "mustard": ("seed", "powder", "sauce", "oil", "jar", "pot", "spoon", "sos*", "ziarn*"),
    "cognac": ("glass", "bottle", "kieliszek", "kieliszk*", "butelk*"),
    "chestnut": ("tree", "roaster", "pan", "flour", "puree", "horse"),
    "slate grey": (
        "roof", "roofing", "tile", "chipping", "coaster", "placemat", "cheese", "board",
    ),
    "baby pink": ("podklad*", "puder*", "pudr*"),
    "mauve": ("miod*",),
    "platinum": ("card", "karta", "karty", "karte"),
}  # fmt: skip

#: Polish ``złoty`` is also the currency: a ``złot-`` form right after a number is money.
CURRENCY_COLOURS: frozenset[str] = frozenset({"gold"})
