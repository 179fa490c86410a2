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


rule paper_table:
    input:
        metrics=f"{RESULTS}/{{paper}}/metrics.csv",
        claims="config/claims/{paper}.yaml",
    output:
        tex=f"{RESULTS}/tables/{{paper}}_{{table}}.tex",
        html=report(f"{RESULTS}/tables/{{paper}}_{{table}}.html", caption="../report/table.rst",
                    category="{paper}", subcategory="tables", labels={"table": "{table}"}),
    log:
        f"{LOGS}/{{paper}}/table_{{table}}.log",
    wildcard_constraints:
        paper=PAPER_RE,
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_REPORT
    shell:
        "python -m repro.report tables --paper {wildcards.paper} --scale " + SCALE + " --metrics {input.metrics}"
        " --table {wildcards.table} --out-tex {output.tex} --out-html {output.html} > {log} 2>&1"


rule claims:
    input:
        metrics=[f"{RESULTS}/{p}/metrics.csv" for p in SELECTED],
        registries=[f"config/claims/{p}.yaml" for p in PAPERS],
    output:
        csv=report(f"{RESULTS}/claims.csv", caption="../report/claims.rst", category="claims"),
        md=f"{RESULTS}/claims.md",
    log:
        f"{LOGS}/claims.log",
    params:
        papers=list(PAPERS),
        metrics=[f"{p}={RESULTS}/{p}/metrics.csv" for p in SELECTED],
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_REPORT
    shell:
        "python -m repro.report claims --scale " + SCALE + " --papers {params.papers} --metrics {params.metrics}"
        " --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"
