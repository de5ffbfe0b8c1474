"""What `./noxw -s stack` prints once it is up: every address, no credentials."""

from service.stack.__main__ import StackSettings, addresses


def test_every_address_and_no_password(tmp_path):
    settings = StackSettings(
        _env_file=None,
        data_dir=tmp_path,
        mlflow_tracking_uri=None,
        ui_port=5001,
        port=3001,
        amqp_url="amqp://nbship:secret@127.0.0.1:5673/%2F",
        mongo_url="mongodb://127.0.0.1:27018",
    )
    found = dict(addresses(settings, "http://127.0.0.1:15672", nx=True))
    assert found == {
        "API": "http://127.0.0.1:3001",
        "OpenAPI page": "http://127.0.0.1:3001/docs",
        "MLflow UI": f"http://127.0.0.1:5001 (store sqlite:///{tmp_path / 'mlflow.db'})",
        "RabbitMQ": "amqp://127.0.0.1:5673/%2F",
        "RabbitMQ management": "http://127.0.0.1:15672",
        "MongoDB protocol": "mongodb://127.0.0.1:27018 (nx-27017)",
    }


def test_a_tracking_server_and_no_management_plugin(tmp_path):
    settings = StackSettings(_env_file=None, data_dir=tmp_path, mlflow_tracking_uri="http://mlflow:5000")
    found = dict(addresses(settings, None, nx=False))
    assert found["MLflow UI"] == "http://mlflow:5000 (the tracking server's own UI)"
    assert "RabbitMQ management" not in found
    assert found["MongoDB protocol"].endswith("(MONGO_URL)")
