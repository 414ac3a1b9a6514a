import unittest

from textkit import slugify


class SlugifyTest(unittest.TestCase):
    def test_lowercases_and_joins_words(self):
        self.assertEqual(slugify("Hello, World!"), "hello-world")

    def test_folds_accents(self):
        self.assertEqual(slugify("Crème Brûlée à Paris"), "creme-brulee-a-paris")

    def test_collapses_and_strips_separators(self):
        self.assertEqual(slugify("  --Already--slugged__text--  "), "already-slugged-text")

    def test_custom_separator(self):
        self.assertEqual(slugify("Hello big World", separator="_"), "hello_big_world")

    def test_max_length_cuts_at_word_boundary(self):
        self.assertEqual(slugify("hello wide world", max_length=12), "hello-wide")
        self.assertEqual(slugify("hello wide world", max_length=10), "hello-wide")
        self.assertEqual(slugify("abcdefghij", max_length=4), "abcd")

    def test_empty_and_symbol_only_input(self):
        self.assertEqual(slugify(""), "")
        self.assertEqual(slugify("!!! ???"), "")

    def test_rejects_non_string(self):
        with self.assertRaises(TypeError):
            slugify(42)

    def test_rejects_bad_arguments(self):
        with self.assertRaises(ValueError):
            slugify("x", max_length=0)
        with self.assertRaises(ValueError):
            slugify("x", separator="")


if __name__ == "__main__":
    unittest.main()
