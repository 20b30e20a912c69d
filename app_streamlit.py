"""`streamlit run app_streamlit.py [-- --model M]`: the app lives in the package (emorec/app/streamlit_app.py)."""
from emorec.app.streamlit_app import main

main()
