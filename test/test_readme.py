"""The README's interface tables are generated from the code and must be current."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_interface_tables_are_current():
    r = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'gen_readme_tables.py'), '--check'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / 'README.md').read_text()
    first_block = readme.split('```bash\n', 1)[1].split('```', 1)[0]
    commands = [line.split('#')[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ['bash scripts/demo.sh', 'bash scripts/run_tests.sh']
    ci = (ROOT / '.ci' / 'run').read_text()
    assert 'bash scripts/run_tests.sh' in ci
    for script in ('demo.sh', 'run_tests.sh'):                      # each sets itself up when needed
        assert 'bash scripts/setup_env.sh' in (ROOT / 'scripts' / script).read_text(), script
    assert (ROOT / 'docs' / 'demo_answers.png').is_file()           # the picture the README shows


def test_every_parameter_is_documented_in_readme():
    from n3f_ros.ros.parameters import parameter_table
    readme = (ROOT / 'README.md').read_text()
    missing = [p['name'] for p in parameter_table() if f"`{p['name']}`" not in readme]
    assert missing == []


def test_every_interface_type_is_a_documented_service():
    """Each n3f_interfaces .srv serves a row of interface.QUERY_SERVICES (the README table's source),
    and each row names an existing .srv."""
    from n3f_ros.ros import interface
    srvs = {f'n3f_interfaces/srv/{p.stem}' for p in (ROOT / 'n3f_interfaces' / 'srv').glob('*.srv')}
    used = {t for _, t, _ in interface.QUERY_SERVICES}
    assert srvs and used == srvs
