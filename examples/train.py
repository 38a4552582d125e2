"""Train a classifier and record everything modeldeploy needs to trace it: copy this file.

    python examples/train.py --tracking-uri http://127.0.0.1:5000 --model wine-classifier

One MLflow run records:
  * the dataset version (`log_dataset`): source, a hash over every value, rows, columns, schema;
  * the preprocessing (`log_preprocessing`): each step of the scikit-learn Pipeline with its
    class and parameters;
  * the training metrics (accuracy, macro precision/recall/F1, log loss) on a held-out split;
  * the model, registered as a new version of `--model`, with its drift baseline
    (`log_drift_baseline`) so the serving pods can watch their inputs against the training data.

Its two stages, `etl` (load, check, split) and `training`, are monitored (`pipeline_stage`):
duration, outcome, rows in and out, the data-quality checks and the evaluation metrics
(`training.metric`) go to the Prometheus Pushgateway at $PUSHGATEWAY_URL (the local stack sets
it; without it nothing is pushed) and into the run, and the stack's alert rules fire when a
stage fails, a check fails, or a stage has not succeeded within a day.

It prints the new version number last, so scripts can capture it:

    version=$(python examples/train.py ... | tail -1)
    modeldeploy promote wine-classifier --version "$version" --to staging

The data is scikit-learn's bundled wine data set (no download). `--regularization` sets the
LogisticRegression's C, so two runs give two different versions.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    ap.add_argument("--model", default="wine-classifier", help="registered model name")
    ap.add_argument("--experiment", default="modeldeploy-examples")
    ap.add_argument("--regularization", type=float, default=1.0, help="LogisticRegression C")
    ap.add_argument("--run-name", default=None)
    args = ap.parse_args(argv)
    if not args.tracking_uri:
        ap.error("set --tracking-uri or MLFLOW_TRACKING_URI")

    import mlflow
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_wine
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from modeldeploy.tracking import (
        log_dataset,
        log_drift_baseline,
        log_preprocessing,
        pipeline_stage,
    )

    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment(args.experiment)

    daily = 24 * 3600.0  # the stale alert fires when a stage has not succeeded for a day
    with pipeline_stage("etl", pipeline=args.model, expected_every=daily) as etl:
        wine = load_wine(as_frame=True)
        frame = wine.frame  # features and the "target" column, as one table
        features = list(wine.feature_names)
        etl.rows_in(len(frame))
        missing = int(frame.isna().sum().sum())
        etl.check("no_missing_values", missing == 0, value=missing)
        smallest = float(frame.target.value_counts(normalize=True).min())
        etl.check("every_class_at_least_10pct", smallest >= 0.10, value=smallest)
        train, test = train_test_split(frame, test_size=0.25, random_state=0, stratify=frame.target)
        etl.rows_out(len(train) + len(test))

    model = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        (
                            "numeric",
                            Pipeline(
                                [
                                    ("impute", SimpleImputer(strategy="median")),
                                    ("scale", StandardScaler()),
                                ]
                            ),
                            features,
                        )
                    ]
                ),
            ),
            ("classify", LogisticRegression(C=args.regularization, max_iter=1000)),
        ]
    )

    with mlflow.start_run(run_name=args.run_name or f"wine-C{args.regularization:g}") as run:
        # What the model learns from, and what it is judged on: two dataset versions.
        log_dataset(train, name="wine-train", source="sklearn.datasets.load_wine", targets="target")
        log_dataset(
            test,
            name="wine-test",
            source="sklearn.datasets.load_wine",
            context="evaluation",
            targets="target",
        )
        with pipeline_stage(
            "training", pipeline=args.model, expected_every=daily, mlflow=True
        ) as training:
            training.rows_in(len(train))
            model.fit(train[features], train.target)
            predicted = model.predict(test[features])
            evaluation = {
                "accuracy": accuracy_score(test.target, predicted),
                "precision": precision_score(test.target, predicted, average="macro"),
                "recall": recall_score(test.target, predicted, average="macro"),
                "f1": f1_score(test.target, predicted, average="macro"),
                "log_loss": log_loss(test.target, model.predict_proba(test[features])),
            }
            for metric, value in evaluation.items():  # the Pipeline dashboard's runs
                training.metric(metric, value)
        log_preprocessing(model)
        mlflow.log_params({"C": args.regularization, "max_iter": 1000})
        mlflow.log_metrics(evaluation)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=args.model,
            input_example=train[features].head(3),
            # skops, MLflow's safe format, refuses types it was not told to trust; the fitted
            # ColumnTransformer keeps numpy dtypes, which are data, not code.
            skops_trusted_types=["numpy.dtype"],
        )
        # The serving pods compare their inputs with this (feature drift, PSI).
        log_drift_baseline(train[features], model_id=info.model_id, target=train.target)

    version = str(info.registered_model_version)
    print(f"run {run.info.run_id}: {args.model} version {version}", file=sys.stderr)
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
