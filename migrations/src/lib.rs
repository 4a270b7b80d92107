//! The engine's own tables: checkpoints, conflicts, run history, base snapshots and the
//! configured field types.
//!
//! Owns their shape and its evolution as sea-orm migrations. Collection tables are not here:
//! they follow the schema file and are created by the store adapter.

use sea_orm_migration::prelude::*;

pub use sea_orm_migration::MigratorTrait;

/// All migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_engine_tables::Migration),
            Box::new(m0002_conflict_local_time::Migration),
            Box::new(m0003_conflict_fields::Migration),
            Box::new(m0004_field_types::Migration),
            Box::new(m0005_stock_collections::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "_deltasync_migrations".into_iden()
    }
}

mod m0001_engine_tables {
    use sea_orm_migration::prelude::*;

    #[derive(Debug)]
    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m0001_engine_tables"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("_deltasync_checkpoint")
                        .if_not_exists()
                        .col(ColumnDef::new("collection").text().not_null().primary_key())
                        .col(ColumnDef::new("pull").text().not_null())
                        .col(ColumnDef::new("delete_cursor").big_integer().null())
                        .col(ColumnDef::new("updated_at").text().not_null())
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table("_deltasync_conflict")
                        .if_not_exists()
                        .col(
                            ColumnDef::new("id")
                                .big_integer()
                                .not_null()
                                .auto_increment()
                                .primary_key(),
                        )
                        .col(ColumnDef::new("collection").text().not_null())
                        .col(ColumnDef::new("key").text().not_null())
                        .col(ColumnDef::new("kind").text().not_null())
                        .col(ColumnDef::new("strategy").text().not_null())
                        .col(ColumnDef::new("resolution").text().null())
                        .col(ColumnDef::new("base").text().null())
                        .col(ColumnDef::new("local").text().null())
                        .col(ColumnDef::new("remote").text().null())
                        .col(ColumnDef::new("remote_stamp").text().null())
                        .col(ColumnDef::new("message").text().null())
                        .col(ColumnDef::new("created_at").text().not_null())
                        .col(ColumnDef::new("resolved_at").text().null())
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("_deltasync_conflict_open")
                        .table("_deltasync_conflict")
                        .col("resolution")
                        .col("collection")
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table("_deltasync_run")
                        .if_not_exists()
                        .col(
                            ColumnDef::new("id")
                                .big_integer()
                                .not_null()
                                .auto_increment()
                                .primary_key(),
                        )
                        .col(ColumnDef::new("started_at").text().not_null())
                        .col(ColumnDef::new("finished_at").text().not_null())
                        .col(ColumnDef::new("ok").boolean().not_null())
                        .col(ColumnDef::new("summary").text().not_null())
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table("_deltasync_base")
                        .if_not_exists()
                        .col(ColumnDef::new("collection").text().not_null())
                        .col(ColumnDef::new("key").text().not_null())
                        .col(ColumnDef::new("data").text().not_null())
                        .primary_key(Index::create().col("collection").col("key"))
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            for table in [
                "_deltasync_base",
                "_deltasync_run",
                "_deltasync_conflict",
                "_deltasync_checkpoint",
            ] {
                manager
                    .drop_table(Table::drop().table(table).if_exists().to_owned())
                    .await?;
            }
            Ok(())
        }
    }
}

/// Conflict records keep the local change time a strategy compared, next to the server's.
mod m0002_conflict_local_time {
    use sea_orm_migration::prelude::*;

    #[derive(Debug)]
    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m0002_conflict_local_time"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .alter_table(
                    Table::alter()
                        .table("_deltasync_conflict")
                        .add_column(ColumnDef::new("local_changed_at").text().null())
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .alter_table(
                    Table::alter()
                        .table("_deltasync_conflict")
                        .drop_column("local_changed_at")
                        .to_owned(),
                )
                .await
        }
    }
}

/// Conflict records say which field of a merged row came from where (JSON object).
mod m0003_conflict_fields {
    use sea_orm_migration::prelude::*;

    #[derive(Debug)]
    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m0003_conflict_fields"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .alter_table(
                    Table::alter()
                        .table("_deltasync_conflict")
                        .add_column(ColumnDef::new("fields").text().null())
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .alter_table(
                    Table::alter()
                        .table("_deltasync_conflict")
                        .drop_column("fields")
                        .to_owned(),
                )
                .await
        }
    }
}

/// The configured type of every synced field, per collection and local table: a field whose
/// type changes in the schema file is refused, and a collection dropped from the file is
/// still known.
mod m0004_field_types {
    use sea_orm_migration::prelude::*;

    #[derive(Debug)]
    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m0004_field_types"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("_deltasync_field")
                        .if_not_exists()
                        .col(ColumnDef::new("collection").text().not_null())
                        .col(ColumnDef::new("field").text().not_null())
                        .col(ColumnDef::new("table_name").text().not_null())
                        .col(ColumnDef::new("type").text().not_null())
                        .col(ColumnDef::new("in_file").boolean().not_null().default(true))
                        .primary_key(Index::create().col("collection").col("field"))
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("_deltasync_field").to_owned())
                .await
        }
    }
}

/// For stock Directus collections: the position of the second pull lane (rows never updated,
/// by their created stamp; `NULL` for collections with one cursor field), the temporary keys
/// of local creates and the server keys they became, and this database's replica id, which
/// makes each create's idempotency key unique across replicas.
mod m0005_stock_collections {
    use sea_orm_migration::prelude::*;

    #[derive(Debug)]
    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m0005_stock_collections"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .alter_table(
                    Table::alter()
                        .table("_deltasync_checkpoint")
                        .add_column(ColumnDef::new("pull_created").text().null())
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table("_deltasync_key_map")
                        .if_not_exists()
                        .col(ColumnDef::new("collection").text().not_null())
                        .col(ColumnDef::new("temporary_key").text().not_null())
                        .col(ColumnDef::new("server_key").text().not_null())
                        .col(ColumnDef::new("mapped_at").text().not_null())
                        .primary_key(Index::create().col("collection").col("temporary_key"))
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table("_deltasync_replica")
                        .if_not_exists()
                        .col(ColumnDef::new("id").text().not_null().primary_key())
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("_deltasync_replica").to_owned())
                .await?;
            manager
                .drop_table(Table::drop().table("_deltasync_key_map").to_owned())
                .await?;
            manager
                .alter_table(
                    Table::alter()
                        .table("_deltasync_checkpoint")
                        .drop_column("pull_created")
                        .to_owned(),
                )
                .await
        }
    }
}
