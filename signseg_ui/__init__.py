"""The dashboard's shared Streamlit helpers (the engine, ``signseg_core``, never imports these).

``signseg_ui.common`` holds what several pages need: the model picker (its choice shared across
pages through ``st.session_state["model"]`` and the URL's ``?model=``), cached models and cached
engine results, background-job progress, and the one place that turns exceptions into
``st.error``.

Environment: ``SIGNSEG_UI_TEST_MODEL=<name>`` (e.g. ``tiny_test``) adds that model to every picker
and makes it the default, so tests and previews run on the 32-px random network in milliseconds.
"""
