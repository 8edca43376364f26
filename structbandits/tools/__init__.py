"""Tools that build the files shipped in ``structbandits/data``: outside the library layers' import graph.

Belongs here: builders of shipped data (``build_response_db``: the mHealth response database from a
local LLM and a sentence-embedding model; ``make_mhealth_styles``: the synthetic database's
parameters). They may join any layers (data, structure, envs); no library layer imports them, only
the command line (``structbandits build-response-db``) or ``python -m structbandits.tools.<name>``.
Importing this package imports none of them.
"""
