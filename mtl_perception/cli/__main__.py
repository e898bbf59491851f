from mtl_perception.cli import run

run()
