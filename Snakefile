# The suite's one DAG: data -> training -> sampling -> metrics -> tables, figures, claims, report.
# Run from the project root:  ./suite dag   (or: snakemake --cores all [--config scale=paper])
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/selfcheck.smk"
include: "workflow/rules/lowdim.smk"
include: "workflow/rules/ddpm.smk"
include: "workflow/rules/autopalette.smk"
include: "workflow/rules/tina.smk"
include: "workflow/rules/strainer.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
