# Report rules: they read only result files (metrics, claims registries) and render tables and claims.
PAPER_RE = "|".join(PAPERS)


rule merge_metrics:
    input:
        parts=lambda w: [part_path(w.paper, p) for p in PAPERS[w.paper]["parts"]],
    output:
        csv=f"{RESULTS}/{{paper}}/metrics.csv",
        prov=f"{RESULTS}/{{paper}}/provenance.json",
    log:
        f"{LOGS}/{{paper}}/merge_metrics.log",
    wildcard_constraints:
        paper=PAPER_RE,
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_REPORT
    shell:
        "python -m repro.report merge --parts {input.parts} --out-csv {output.csv} --out-json {output.prov} > {log} 2>&1"


for _paper, _spec in PAPERS.items():

    rule:
        name:
            f"tables_{_paper}"
        input:
            metrics=f"{RESULTS}/{_paper}/metrics.csv",
            claims=f"config/claims/{_paper}.yaml",
        output:
            tex=[f"{RESULTS}/tables/{_paper}_{t}.tex" for t in _spec["tables"]],
            html=[
                report(f"{RESULTS}/tables/{_paper}_{t}.html", caption="../report/table.rst", category=_paper,
                       subcategory="tables", labels={"table": t})
                for t in _spec["tables"]
            ],
        log:
            f"{LOGS}/{_paper}/tables.log",
        params:
            scale=SCALE,
            paper=_paper,
            tables=_spec["tables"],
        resources:
            mem_mb=1000,
            runtime=5,
        conda:
            ENV_REPORT
        shell:
            "python -m repro.report tables --paper {params.paper} --scale {params.scale} --metrics {input.metrics}"
            " --table {params.tables} --out-tex {output.tex} --out-html {output.html} > {log} 2>&1"


rule claims:
    input:
        metrics=[f"{RESULTS}/{p}/metrics.csv" for p in SELECTED],
        registries=[f"config/claims/{p}.yaml" for p in PAPERS],
    output:
        csv=f"{RESULTS}/claims.csv",
        md=f"{RESULTS}/claims.md",
        html=report(f"{RESULTS}/claims.html", caption="../report/claims.rst", category="claims"),
    log:
        f"{LOGS}/claims.log",
    params:
        scale=SCALE,
        papers=list(PAPERS),
        metrics=[f"{p}={RESULTS}/{p}/metrics.csv" for p in SELECTED],
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_REPORT
    shell:
        "python -m repro.report claims --scale {params.scale} --papers {params.papers} --metrics {params.metrics}"
        " --out-csv {output.csv} --out-md {output.md} --out-html {output.html} > {log} 2>&1"
