# Sourced by the sbatch scripts. The project root is INFOGAP_ROOT (exported by `infogap ablate
# --launcher slurm`), else the directory sbatch was called from.
#   INFOGAP_PYTHON  the Python to use (default: <root>/.venv/bin/python if present, else python3)
infogap_env() {
    cd "${INFOGAP_ROOT:-${SLURM_SUBMIT_DIR:-.}}"
    PYTHON="${INFOGAP_PYTHON:-}"
    if [ -z "$PYTHON" ]; then
        if [ -x .venv/bin/python ]; then PYTHON="$PWD/.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
    fi
    export PYTHONUNBUFFERED=1
    INFOGAP=("$PYTHON" -m infogap)
    echo "[$(date -Is)] job ${SLURM_JOB_ID:-?} (array ${SLURM_ARRAY_JOB_ID:--}_${SLURM_ARRAY_TASK_ID:--}, restart ${SLURM_RESTART_COUNT:-0}) on $(hostname) in $PWD"
}
