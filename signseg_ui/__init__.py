"""The dashboard's Streamlit helpers (the engine, ``signseg_core``, never imports these).

Shared by several pages:

* ``navigation``: the page list and the sidebar links;
* ``pickers``: the model picker (its choice shared across pages through
  ``st.session_state["model"]`` and the URL's ``?model=``) and the layer picker;
* ``device``: the device a session computes on;
* ``cached_models``: models, generators and metric setups shared read-only by every session;
* ``dale_tables``: cached Dale-index and sign-ratio tables;
* ``error_display``: the one place that turns exceptions into ``st.error``;
* ``jobs_widget``: one widget for a background job's life cycle (Compute, progress, Cancel);
* ``evolution_settings``: one widget for the generator, budget and seed of an evolution;
* ``widget_choices``: widget choices kept across pages and in the URL;
* ``export_widgets``: the export expander beneath any figure or image.

Per page: ``explorer``, ``unit_images`` and ``unit_metrics`` (Ablation explorer),
``sender_images`` (Dale-ranked channels), ``compare`` (Compare models), ``export_page`` (Export),
``neurons`` and ``neuron_page`` (Neuron models).

Environment: ``SIGNSEG_UI_TEST_MODEL=<name>`` (e.g. ``tiny_test``) adds that model to every picker
and makes it the default, so tests and previews run on the 32-px random network in milliseconds.
"""
