"""URL slugs from arbitrary text."""
import re
import unicodedata

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def slugify(text, separator="-", max_length=None):
    """Return a lower-case ASCII slug of ``text``.

    Accents are folded to ASCII (e.g. "é" -> "e"), every run of other
    characters becomes one ``separator``, and separators never lead, trail
    or repeat. With ``max_length`` the slug is cut at a word boundary when
    the cut would split a word that is not the first one.
    """
    if not isinstance(text, str):
        raise TypeError("slugify() expects str, got %s" % type(text).__name__)
    if not separator:
        raise ValueError("separator must not be empty")
    if max_length is not None and max_length < 1:
        raise ValueError("max_length must be positive")
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = _NON_ALNUM.sub(separator, folded.lower()).strip(separator)
    if max_length is not None and len(slug) > max_length:
        cut = slug[:max_length]
        splits_word = not slug[max_length:].startswith(separator)
        if splits_word and separator in cut:
            cut = cut.rsplit(separator, 1)[0]
        slug = cut.strip(separator)
    return slug
