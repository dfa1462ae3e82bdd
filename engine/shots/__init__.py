"""Shots: a long edit split at its cuts, so snippets, co-alignment and merging stay inside a shot.

``model``: shots and their snippet plans; ``detector``: cuts found while frames stream past;
``cut_lists``: cuts read from an editor's files (frame lists, CSV, CMX3600 EDL);
``shots_json``: the ``NAME_shots.json`` output; ``contact_sheet``: one picture of every shot.
All frame numbers are 0-based within the processed clip unless said otherwise.
"""
