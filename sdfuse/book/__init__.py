"""The book: what the notebooks display (:mod:`.pages`, :mod:`.figures`, one ``*_page`` module per
page with displays of its own), the figures of images (:mod:`.viz`), the reproduction status
(:mod:`.status`), provenance and run records (:mod:`.provenance`, :mod:`.run_record`,
:mod:`.bundle`), the papermill runner (:mod:`.runner`) and the pages' own data (:mod:`.reliability`,
:mod:`.quality`, :mod:`.launch_buttons`).
"""
