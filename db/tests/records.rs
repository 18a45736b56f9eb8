//! Records shared by several servers on one database: a conditional write (compare-and-swap)
//! lets exactly one of two writers that read the same record replace it.

use pier_db::{Db, Table};
use serde_json::{Value, json};

#[tokio::test]
async fn of_two_writers_that_read_the_same_record_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    // Two handles (two pools), as two servers would hold.
    let (a, b) = (
        Db::open(dir.path()).await.unwrap(),
        Db::open(dir.path()).await.unwrap(),
    );
    assert!(
        a.insert(Table::Endpoints, "e", &json!({"status": "InService"}))
            .await
            .unwrap()
    );
    let (seen_a, stored_a) = a
        .get_versioned::<Value>(Table::Endpoints, "e")
        .await
        .unwrap()
        .unwrap();
    let (seen_b, stored_b) = b
        .get_versioned::<Value>(Table::Endpoints, "e")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen_a, seen_b);
    assert_eq!(stored_a, stored_b);
    let won_a = a
        .update_if(
            Table::Endpoints,
            "e",
            &stored_a,
            &json!({"status": "Updating", "by": "a"}),
        )
        .await
        .unwrap();
    let won_b = b
        .update_if(
            Table::Endpoints,
            "e",
            &stored_b,
            &json!({"status": "Updating", "by": "b"}),
        )
        .await
        .unwrap();
    assert!(won_a && !won_b, "exactly the first writer wins");
    let now: Value = b.get(Table::Endpoints, "e").await.unwrap().unwrap();
    assert_eq!(now["by"], "a");
    // A fresh read can write again; a removed record cannot be written.
    let (_, stored) = b
        .get_versioned::<Value>(Table::Endpoints, "e")
        .await
        .unwrap()
        .unwrap();
    assert!(
        b.update_if(
            Table::Endpoints,
            "e",
            &stored,
            &json!({"status": "InService"})
        )
        .await
        .unwrap()
    );
    assert!(a.delete(Table::Endpoints, "e").await.unwrap());
    assert!(
        !b.update_if(Table::Endpoints, "e", &stored, &json!({}))
            .await
            .unwrap()
    );
}
