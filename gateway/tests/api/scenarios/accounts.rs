//! Accounts and sessions: register, login, refresh, logout, /me, /me/password, /users.

use serde_json::{Value, json};
use shop_testkit::TestApp;

use super::{Call, Caller, Rules, look, refuse_bad_requests, token};

#[tokio::test]
async fn a_customer_signs_up_refreshes_edits_and_signs_out() {
    let app = TestApp::spawn().await;
    let created = Call::post("/register")
        .json(json!({"email": "Ann@Example.com", "password": "correct horse", "name": "Ann"}))
        .expect(&app, None, 201)
        .await;
    assert_eq!(created["email"], "ann@example.com");
    assert_eq!(created["role"], "user");

    let login = Call::post("/login")
        .json(json!({"email": "ann@example.com", "password": "correct horse"}))
        .expect(&app, None, 200)
        .await;
    assert_eq!(login["tokenType"], "Bearer");
    assert_eq!(login["expiresIn"], 900);
    let first = login["accessToken"].as_str().unwrap().to_owned();
    let me = Call::get("/me").expect(&app, Some(&first), 200).await;
    assert_eq!(me["id"], created["id"]);
    assert_eq!(me["name"], "Ann");

    let pair = Call::post("/refresh")
        .json(json!({"refreshToken": login["refreshToken"]}))
        .expect(&app, None, 200)
        .await;
    assert_ne!(pair["refreshToken"], login["refreshToken"]);
    let access = pair["accessToken"].as_str().unwrap().to_owned();

    let renamed = Call::patch("/me")
        .json(json!({"name": "Ann B."}))
        .expect(&app, Some(&access), 200)
        .await;
    assert_eq!(renamed["name"], "Ann B.");
    assert_eq!(
        Call::get("/me").expect(&app, Some(&access), 200).await,
        renamed
    );

    // A password change ends every other session and keeps this one.
    let elsewhere = app.login_ok("ann@example.com", "correct horse").await;
    Call::post("/me/password")
        .json(json!({"currentPassword": "correct horse", "newPassword": "battery staple"}))
        .expect(&app, Some(&access), 204)
        .await;
    Call::get("/me")
        .refused(
            &app,
            Some(&elsewhere.access_token),
            401,
            "unauthorized",
            "another session after a password change",
        )
        .await;
    Call::get("/me").expect(&app, Some(&access), 200).await;
    app.login_ok("ann@example.com", "battery staple").await;

    Call::post("/logout").expect(&app, Some(&access), 204).await;
    Call::get("/me")
        .refused(&app, Some(&access), 401, "unauthorized", "after logout")
        .await;
    Call::post("/refresh")
        .json(json!({"refreshToken": pair["refreshToken"]}))
        .refused(&app, None, 401, "unauthorized", "refresh after logout")
        .await;
}

#[tokio::test]
async fn account_writes_refuse_bad_requests_and_change_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.new_user().await;
    let caller = Caller::of(&app, &user).await;
    let views = [
        ("/me".to_owned(), token(&user)),
        ("/users".to_owned(), token(&admin)),
    ];
    let before = look(&app, &views).await;

    // POST /register: the email exists already, or the body is bad.
    let register = Call::post("/register")
        .json(json!({"email": "new@example.com", "password": "long enough", "name": "New"}));
    refuse_bad_requests(
        &app,
        &register,
        Rules {
            required: &["email", "password"],
            ..Rules::default()
        },
    )
    .await;
    for (body, field) in [
        (
            json!({"email": "not-an-email", "password": "long enough"}),
            "email",
        ),
        (
            json!({"email": "new@example.com", "password": "short"}),
            "password",
        ),
        (
            json!({"email": "new@example.com", "password": "long enough", "role": "admin"}),
            "role",
        ),
    ] {
        let problem = register
            .clone()
            .json(body)
            .refused(&app, None, 422, "validation-failed", field)
            .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    register
        .clone()
        .json(json!({"email": user.email.to_uppercase(), "password": "another password"}))
        .refused(&app, None, 409, "email-taken", "a taken email")
        .await;
    app.login_ok(&user.email, &user.password).await;

    // POST /login: bad bodies, then a wrong password and an unknown email with one answer.
    let login = Call::post("/login").json(json!({"email": user.email, "password": "long enough"}));
    refuse_bad_requests(
        &app,
        &login,
        Rules {
            required: &["email", "password"],
            ..Rules::default()
        },
    )
    .await;
    let wrong = login
        .refused(&app, None, 401, "unauthorized", "a wrong password")
        .await;
    let unknown = Call::post("/login")
        .json(json!({"email": "nobody@example.com", "password": "long enough"}))
        .refused(&app, None, 401, "unauthorized", "an unknown email")
        .await;
    assert_eq!(wrong, unknown);

    // POST /logout: refused credentials and bodies end no session.
    let logout = Call::post("/logout");
    refuse_bad_requests(
        &app,
        &logout,
        Rules {
            caller: Some(&caller),
            ..Rules::default()
        },
    )
    .await;
    Call::get("/me").expect(&app, token(&user), 200).await;

    // PATCH /me.
    let patch_me = Call::patch("/me").json(json!({"name": "Changed"}));
    refuse_bad_requests(
        &app,
        &patch_me,
        Rules {
            caller: Some(&caller),
            ..Rules::default()
        },
    )
    .await;
    for body in [
        json!({"name": "x".repeat(101)}),
        json!({"name": "a\u{7}b"}),
        json!({"email": "other@example.com"}),
        json!({"role": "admin"}),
    ] {
        patch_me
            .clone()
            .json(body.clone())
            .refused(
                &app,
                token(&user),
                422,
                "validation-failed",
                &body.to_string(),
            )
            .await;
    }

    // POST /me/password: nothing changes and no other session ends.
    let password = Call::post("/me/password")
        .json(json!({"currentPassword": user.password, "newPassword": "a new password"}));
    refuse_bad_requests(
        &app,
        &password,
        Rules {
            caller: Some(&caller),
            required: &["currentPassword", "newPassword"],
            ..Rules::default()
        },
    )
    .await;
    for (body, field) in [
        (
            json!({"currentPassword": user.password, "newPassword": "short"}),
            "newPassword",
        ),
        (
            json!({"currentPassword": user.password, "newPassword": "x".repeat(73)}),
            "newPassword",
        ),
        (
            json!({"currentPassword": "not the password", "newPassword": "a new password"}),
            "currentPassword",
        ),
    ] {
        let problem = password
            .clone()
            .json(body)
            .refused(&app, token(&user), 422, "validation-failed", field)
            .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    // POST /refresh: bad bodies and unknown tokens revoke nothing.
    let refresh = Call::post("/refresh").json(json!({"refreshToken": "made-up"}));
    refuse_bad_requests(
        &app,
        &refresh,
        Rules {
            required: &["refreshToken"],
            ..Rules::default()
        },
    )
    .await;
    refresh
        .refused(&app, None, 401, "unauthorized", "an unknown refresh token")
        .await;
    refresh
        .clone()
        .json(json!({"refreshToken": user.tokens.access_token}))
        .refused(&app, None, 401, "unauthorized", "an access token")
        .await;

    assert_eq!(look(&app, &views).await, before, "nothing visible changed");
    let users: Value = Call::get("/users").expect(&app, token(&admin), 200).await;
    assert_eq!(users["total"], 2, "no account was created: {users}");
    // The user's session and password are as they were.
    app.login_ok(&user.email, &user.password).await;
    Call::post("/refresh")
        .json(json!({"refreshToken": user.tokens.refresh_token}))
        .expect(&app, None, 200)
        .await;
}

#[tokio::test]
async fn admins_manage_accounts_and_bad_admin_writes_change_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let admin_caller = Caller::of(&app, &admin).await;
    let user = app.new_user().await;
    let other = app.new_user().await;

    let page = Call::get("/users?page=1&limit=2")
        .expect(&app, token(&admin), 200)
        .await;
    assert_eq!(
        (page["total"].as_i64(), page["limit"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(page["items"][0]["email"], other.email, "newest first");
    let list = Call::get("/users");
    list.refused(&app, None, 401, "unauthorized", "no token")
        .await;
    list.refused(&app, token(&user), 403, "forbidden", "a user")
        .await;
    for query in ["limit=0", "limit=101", "page=0"] {
        Call::get(format!("/users?{query}"))
            .refused(&app, token(&admin), 422, "validation-failed", query)
            .await;
    }

    let views = [
        ("/users".to_owned(), token(&admin)),
        ("/me".to_owned(), token(&user)),
    ];
    let before = look(&app, &views).await;
    let patch =
        Call::patch(format!("/users/{}", user.id)).json(json!({"role": "admin", "disabled": true}));
    refuse_bad_requests(
        &app,
        &patch,
        Rules {
            caller: Some(&admin_caller),
            not_admin: Some(&other),
            ..Rules::default()
        },
    )
    .await;
    // The user themselves is no administrator either.
    patch
        .refused(&app, token(&user), 403, "forbidden", "the user themselves")
        .await;
    // An empty change is refused as a whole; a bad value by its field.
    for (body, field) in [
        (json!({}), Some("body")),
        (json!({"role": "emperor"}), Some("role")),
        (json!({"email": "x@example.com"}), Some("email")),
    ] {
        let problem = patch
            .clone()
            .json(body.clone())
            .refused(
                &app,
                token(&admin),
                422,
                "validation-failed",
                &body.to_string(),
            )
            .await;
        if let Some(field) = field {
            assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        }
    }
    patch
        .at("/users/not-a-uuid")
        .refused(&app, token(&admin), 400, "invalid-id", "a malformed id")
        .await;
    patch
        .at(format!("/users/{}", uuid::Uuid::now_v7()))
        .refused(&app, token(&admin), 404, "not-found", "an unknown id")
        .await;
    assert_eq!(look(&app, &views).await, before, "nothing visible changed");

    // Promoting ends the user's sessions; the new role comes with the next login.
    let promoted = Call::patch(format!("/users/{}", user.id))
        .json(json!({"role": "admin"}))
        .expect(&app, token(&admin), 200)
        .await;
    assert_eq!(promoted["role"], "admin");
    Call::get("/me")
        .refused(
            &app,
            token(&user),
            401,
            "unauthorized",
            "a promoted user's old token",
        )
        .await;
    let again = app.login_ok(&user.email, &user.password).await;
    Call::get("/users")
        .expect(&app, Some(&again.access_token), 200)
        .await;
    let disabled = Call::patch(format!("/users/{}", other.id))
        .json(json!({"disabled": true}))
        .expect(&app, token(&admin), 200)
        .await;
    assert_eq!(disabled["disabled"], true);
    Call::post("/login")
        .json(json!({"email": other.email, "password": other.password}))
        .refused(&app, None, 401, "unauthorized", "a disabled account")
        .await;
}
