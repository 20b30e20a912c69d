"""The Streamlit app. The UI is ``streamlit_app.py``; the logic it uses (settings, quiz deck
and scoring, drawing) lives in plain modules that tests import without Streamlit."""
