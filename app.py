"""ChemLM Studio: Streamlit entry point."""
import streamlit as st

st.set_page_config(page_title="ChemLM Studio", page_icon="🧪", layout="wide")
st.title("ChemLM Studio")
st.write("Fine-tune chemical language models on lipophilicity. The dashboard pages arrive with the app issue.")
