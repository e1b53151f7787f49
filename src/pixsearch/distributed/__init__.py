"""Distributed indexing (``pixsearch index --ray``): the only package that imports Ray (extra ``pixsearch[ray]``)."""
